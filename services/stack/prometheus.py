"""The local stack's Prometheus configuration: compose's jobs and alert rules, with each job's
targets being the local processes of that role on 127.0.0.1 (see
``services.observability.prometheus``, which renders compose's file too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.observability.prometheus import Discovery, render_prometheus_config
from services.observability.queries import ALERTS_PATH


def render_local_config(
    targets_by_job: Mapping[str, Sequence[str]], *, scrape_interval_s: float = 2.0
) -> str:
    """The Prometheus YAML for these ``job -> [host:port, ...]`` targets; a job with no
    target is left out.

    >>> text = render_local_config({"detector": ["127.0.0.1:9102"], "simulator": []})
    >>> "127.0.0.1:9102" in text and "simulator" not in text
    True
    """
    return render_prometheus_config(
        {job: targets for job, targets in targets_by_job.items() if targets},
        rule_files=[str(ALERTS_PATH)],
        discovery=Discovery.STATIC,
        scrape_interval_s=scrape_interval_s,
    )
