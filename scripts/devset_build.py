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
``DIR/<owner>+<name>/repo`` instead. A clip whose repository is not given is skipped with a
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
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
    args = parser.parse_args()
    given: dict[str, Path] = {}
    for spec in args.repo:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--repo {spec!r}: expected OWNER/NAME=PATH")
        given[name] = Path(path)
    sources = yaml.safe_load((DEVSET / "sources.yaml").read_text(encoding="utf-8"))["clips"]
    skipped = 0
    for clip, source in sources.items():
        git_dir = _git_dir(source["repo"], given, args.mirrors)
        if git_dir is None and "copy" not in source:
            print(f"skip {clip}: no local copy of {source['repo']} (--repo or --mirrors)")
            skipped += 1
            continue
        folder = args.out / clip
        folder.mkdir(parents=True, exist_ok=True)
        labels = DEVSET / clip / "labels.json"
        video = folder / yaml.safe_load(labels.read_text(encoding="utf-8"))["video"]
        if git_dir is None:  # a clip whose licence let it be committed here
            shutil.copy(DEVSET.parent / source["copy"], video)
        else:
            _extract(git_dir, source["blob"], video)
        if _sha256(video) != source["sha256"]:
            print(f"error {clip}: {video} does not have the sha256 in sources.yaml")
            return 2
        shutil.copy(labels, folder / "labels.json")
        shutil.copy(DEVSET / clip / "scene.yaml", folder / "scene.yaml")
        print(f"ok   {clip}: {video}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
