"""Re-create the dev-set clip folders from local copies of the source repositories.

The videos are not in this repository (see devset/sources.yaml for why). Given a local
clone (or bare mirror) of each source repository, this writes ``OUT/<clip>/`` with the video
taken out of git by its blob id, checked against its sha256, beside the clip's labels.json and
scene.yaml from ``devset/``::

    python scripts/devset_build.py --out /work/devset \\
        --repo webserver105/Red_Light_Violation_Detection=~/src/Red_Light_Violation_Detection \\
        --repo AhmadYahya97/Fully-Automated-red-light-Violation-Detection=~/src/fully-automated

A clip whose licence allows it is also committed under ``devset/clips/`` (its ``copy`` in
sources.yaml) and needs no local repository. ``--mirrors DIR`` finds repositories as
``DIR/<owner>+<name>/repo`` instead. A clip with a ``trim`` is cut from its source with
FFmpeg. A clip whose repository is not given is skipped with a
message; the exit code is 1 if any was skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

DEVSET = Path(__file__).resolve().parent.parent / "devset"


def _git_dir(repo: str, given: dict[str, Path], mirrors: Path | None) -> Path | None:
    if repo in given:
        return given[repo].expanduser()
    if mirrors is not None:
        candidate = mirrors / repo.replace("/", "+") / "repo"
        if candidate.exists():
            return candidate
    return None


def _extract(git_dir: Path, blob: str, target: Path) -> None:
    # A bare mirror or a .git folder holds objects/; a clone's work tree does not.
    bare = (git_dir / "objects").is_dir()
    where = ["--git-dir", str(git_dir)] if bare else ["-C", str(git_dir)]
    with target.open("wb") as handle:
        subprocess.run(["git", *where, "cat-file", "blob", blob], stdout=handle, check=True)


def _trim(source: Path, target: Path, *, first: int, last: int) -> None:
    """Frames ``first..last`` of ``source``, re-encoded (so the labels' frame numbers hold;
    the bytes depend on the FFmpeg build, so only the source's sha256 is checked)."""
    select = f"trim=start_frame={first}:end_frame={last + 1},setpts=PTS-STARTPTS"
    encode = ["-c:v", "libx264", "-crf", "18", "-preset", "medium", "-pix_fmt", "yuv420p"]
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-i",
            str(source),
            "-vf",
            select,
            "-an",
            *encode,
            str(target),
        ],
        check=True,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="write the clip folders here")
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="OWNER/NAME=PATH",
        help="a local clone or bare mirror of a source repository (repeatable)",
    )
    parser.add_argument("--mirrors", type=Path, help="find repositories as DIR/<owner>+<name>/repo")
    parser.add_argument(
        "--devset",
        type=Path,
        default=DEVSET,
        help="labels, scenes and sources.yaml (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    devset: Path = args.devset
    given: dict[str, Path] = {}
    for spec in args.repo:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--repo {spec!r}: expected OWNER/NAME=PATH")
        given[name] = Path(path)
    sources = yaml.safe_load((devset / "sources.yaml").read_text(encoding="utf-8"))["clips"]
    skipped = 0
    for clip, source in sources.items():
        git_dir = _git_dir(source["repo"], given, args.mirrors)
        if git_dir is None and "copy" not in source:
            print(f"skip {clip}: no local copy of {source['repo']} (--repo or --mirrors)")
            skipped += 1
            continue
        folder = args.out / clip
        folder.mkdir(parents=True, exist_ok=True)
        labels = devset / clip / "labels.json"
        video = folder / yaml.safe_load(labels.read_text(encoding="utf-8"))["video"]
        trim = source.get("trim")
        fetched = video.with_name("source" + video.suffix) if trim else video
        if git_dir is None:  # a clip whose licence let it be committed here
            shutil.copy(devset.parent / source["copy"], fetched)
        else:
            _extract(git_dir, source["blob"], fetched)
        if _sha256(fetched) != source["sha256"]:
            print(f"error {clip}: {fetched} does not have the sha256 in sources.yaml")
            return 2
        if trim:
            _trim(fetched, video, first=trim["first_frame"], last=trim["last_frame"])
            fetched.unlink()
        shutil.copy(labels, folder / "labels.json")
        shutil.copy(devset / clip / "scene.yaml", folder / "scene.yaml")
        print(f"ok   {clip}: {video}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
