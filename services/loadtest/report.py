"""A load run as the contract's JSON, and as a PNG over time (throughput, lag, latency)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.loadtest.reconcile import Entry, Reconciliation, percentiles, reconcile
from services.loadtest.run import LoadRun, handover_windows
from services.loadtest.sampler import Sample

LISTED = 25  # lost/duplicated/extra items written out in full, for a reader to look at


def analyse(run: LoadRun) -> tuple[dict[str, Any], Reconciliation]:
    """The report's JSON object (the contract's keys and more) and the reconciliation."""
    spec = run.spec
    window = (
        run.start_ms + int(spec.settle_s * 1000),
        run.end_ms - int(spec.tail_s * 1000),
    )
    result = reconcile(
        run.truths,
        run.entries,
        window_ms=window,
        handovers=handover_windows(run),
        source_drops=run.source_drops,
    )
    scored = [e for e in run.entries if window[0] <= e.ts_ms <= window[1]]
    load = [s for s in run.samples if s.t_s <= spec.seconds]
    first, last_load, last = run.samples[0], load[-1], run.samples[-1]
    load_s = max(last_load.t_s - first.t_s, 1.0)
    timeline = _timeline(run.samples)
    report: dict[str, Any] = {
        "cameras": spec.cameras,
        "fps": spec.fps,
        "resolution": spec.resolution,
        "seconds": spec.seconds,
        "seed": run.seed,
        "generators": run.generators,
        "offered_fps": round(spec.cameras * spec.fps, 2),
        "published_fps": round((last_load.published - first.published) / load_s, 2),
        "achieved_fps": round((last_load.processed - first.processed) / load_s, 2),
        "e2e_latency_ms": _latency(scored, lambda e: e.e2e_ms),
        "violation_to_entry_ms": _latency(scored, lambda e: e.since_violation_ms),
        "violations": result.counts(),
        "drops": {
            "source_late": int(last.source_dropped),
            "detector": {k: int(v) for k, v in sorted(last.detector_dropped.items())},
            "never_processed": int(
                max(last.published - last.processed - sum(last.detector_dropped.values()), 0)
            ),
        },
        "throughput": {
            "detector_fps_mean": _mean(t["processed_fps"] for t in timeline[1 : len(load)]),
            "detector_fps_max": max((t["processed_fps"] for t in timeline), default=0.0),
            "dispatcher_entries_per_s_mean": _mean(
                t["dispatched_per_s"] for t in timeline[1 : len(load)]
            ),
        },
        "lag_messages": {
            group: {
                "max": max(s.lag_by_group.get(group, 0.0) for s in run.samples),
                "end_of_load": last_load.lag_by_group.get(group, 0.0),
                "end": last.lag_by_group.get(group, 0.0),
            }
            for group in sorted({g for s in run.samples for g in s.lag_by_group})
        },
        "drain_s": round(run.drained_s, 1),
        "kill": _kill(run),
        "processes": _processes(run.samples),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "start_ms": run.start_ms,
        "scored_window_ms": list(window),
        "lost": [asdict(t) for t in result.lost[:LISTED]],
        "lost_in_handover": [asdict(t) for t in result.lost_in_handover[:LISTED]],
        "lost_at_source": [asdict(t) for t in result.lost_at_source[:LISTED]],
        "duplicated": [asdict(e) for e in result.duplicated[:LISTED]],
        "extra": [asdict(e) for e in result.extra[:LISTED]],
        "timeline": timeline,
    }
    return report, result


def _latency(entries: Sequence[Entry], of: Callable[[Entry], int]) -> dict[str, Any]:
    """Percentiles of ``of`` over the entries, overall and by violation type."""
    by_type: dict[str, list[Entry]] = {}
    for entry in entries:
        by_type.setdefault(entry.type.value, []).append(entry)
    return {
        **percentiles([float(of(e)) for e in entries]),
        "max": max((of(e) for e in entries), default=None),
        "count": len(entries),
        "by_type": {
            kind: {**percentiles([float(of(e)) for e in group]), "max": max(map(of, group))}
            for kind, group in sorted(by_type.items())
        },
    }


def _mean(values: Any) -> float:
    items = list(values)
    return round(sum(items) / len(items), 2) if items else 0.0


def _timeline(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    rows = []
    for before, now in zip([samples[0], *samples], samples, strict=False):
        dt = max(now.t_s - before.t_s, 1e-9) if now is not before else 1.0
        rows.append(
            {
                "t_s": now.t_s,
                "published_fps": round((now.published - before.published) / dt, 2),
                "processed_fps": round((now.processed - before.processed) / dt, 2),
                "replayed_fps": round((now.replayed - before.replayed) / dt, 2),
                "dispatched_per_s": round((now.dispatched - before.dispatched) / dt, 2),
                "lag_messages": dict(now.lag_by_group),
            }
        )
    return rows


def _kill(run: LoadRun) -> dict[str, Any] | None:
    kill = run.kill
    if kill is None:
        return None
    resumed = list(kill.resumed_s.values())
    return {
        "process": kill.process,
        "at_s": kill.at_s,
        "cameras_moved": len(kill.cameras),
        "cameras_resumed": len(resumed),
        # Which cameras moved, and when each resumed: what a `lost` is told apart by.
        "moved": sorted(kill.cameras),
        "resumed_s": dict(sorted(kill.resumed_s.items())),
        "failover_s": max(resumed) if resumed else None,
        "first_resumed_s": min(resumed) if resumed else None,
        "caught_up_s": kill.caught_up_s,
        "session_timeout_s": run.session_timeout_s,
    }


def _processes(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    names = sorted({n for s in samples for n in s.cpu_percent})
    out = {}
    for name in names:
        cpu = [s.cpu_percent[name] for s in samples[1:] if name in s.cpu_percent]
        rss = [s.rss_bytes[name] for s in samples if name in s.rss_bytes]
        out[name] = {
            "cpu_percent_mean": _mean(cpu),
            "cpu_percent_max": round(max(cpu, default=0.0), 1),
            "rss_mib_max": round(max(rss, default=0.0) / 2**20, 1),
        }
    return out


def plot(run: LoadRun, report: dict[str, Any], path: Path) -> None:
    """Three panels over the run: frames/s and entries/s, consumer lag, e2e latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = report["timeline"]
    t = [row["t_s"] for row in timeline]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax1.axhline(report["offered_fps"], color="grey", linestyle=":", label="offered fps")
    ax1.plot(t, [r["published_fps"] for r in timeline], label="published fps")
    ax1.plot(t, [r["processed_fps"] for r in timeline], label="detected fps")
    ax1.plot(t, [r["replayed_fps"] for r in timeline], label="replayed fps (handover)")
    ax1b = ax1.twinx()
    ax1b.plot(
        t,
        [r["dispatched_per_s"] for r in timeline],
        color="black",
        alpha=0.5,
        label="entries/s (right)",
    )
    ax1.set_ylabel("frames / s")
    ax1b.set_ylabel("control-center entries / s")
    ax1.legend(loc="upper left", fontsize=8)
    ax1b.legend(loc="upper right", fontsize=8)
    for group in report["lag_messages"]:
        ax2.plot(t, [r["lag_messages"].get(group, 0.0) for r in timeline], label=group)
    ax2.set_ylabel("consumer lag (messages)")
    ax2.legend(loc="upper left", fontsize=8)
    start_s = run.start_ms / 1000
    # Entries of frames sent before this run (a backlog) would only stretch the axes.
    entries = sorted(
        (e for e in run.entries if run.start_ms <= e.ts_ms <= run.end_ms),
        key=lambda e: e.dispatched_ts_ms,
    )
    ax3.scatter(
        [e.dispatched_ts_ms / 1000 - start_s for e in entries],
        [e.e2e_ms for e in entries],
        s=8,
        label="entry e2e latency",
    )
    ax3.axhline(1000, color="red", linestyle=":", label="1 s goal")
    ax3.set_ylabel("capture → control center (ms)")
    ax3.set_xlabel("seconds since the load started")
    ax3.legend(loc="upper left", fontsize=8)
    if run.kill is not None:
        for ax in (ax1, ax2, ax3):
            ax.axvline(run.kill.at_s, color="red", alpha=0.6)
        ax1.annotate(
            f"kill {run.kill.process}",
            (run.kill.at_s, report["offered_fps"]),
            fontsize=8,
            color="red",
        )
    latency = report["e2e_latency_ms"]
    fig.suptitle(
        f"{report['cameras']} cameras x {report['fps']:g} fps at {report['resolution']}: "
        f"achieved {report['achieved_fps']:.0f} of {report['offered_fps']:.0f} fps, "
        f"e2e p99 {latency.get('p99', float('nan')):.0f} ms"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
