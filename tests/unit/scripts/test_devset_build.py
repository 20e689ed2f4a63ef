"""scripts/devset_build.py: clip folders re-created from a local git copy, sha-checked, trimmed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import yaml

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "devset_build.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("devset_build", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["devset_build"] = module
    spec.loader.exec_module(module)
    return module


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_source_repo(root: Path) -> tuple[Path, str]:
    """A git repository holding one 30-frame MJPG clip; returns it and the clip's blob id."""
    repo = root / "source"
    repo.mkdir()
    writer = cv2.VideoWriter(str(repo / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for index in range(30):
        writer.write(np.full((48, 64, 3), index * 8, np.uint8))
    writer.release()
    git("init", "-q", cwd=repo)
    git("add", "clip.avi", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clip", cwd=repo)
    return repo, git("rev-parse", "HEAD:clip.avi", cwd=repo)


def make_devset(root: Path, blob: str, sha256: str, **extra: object) -> Path:
    devset = root / "devset"
    (devset / "tiny").mkdir(parents=True)
    (devset / "tiny" / "labels.json").write_text('{"video": "clip.avi"}')
    (devset / "tiny" / "scene.yaml").write_text("camera_id: tiny\n")
    source = {"repo": "someone/source", "path": "clip.avi", "blob": blob, "sha256": sha256}
    (devset / "sources.yaml").write_text(yaml.safe_dump({"clips": {"tiny": source | extra}}))
    return devset


def frame_count(path: Path) -> int:
    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    return count


def test_build_extracts_checks_and_trims(tmp_path: Path) -> None:
    build = load_script()
    repo, blob = make_source_repo(tmp_path)
    sha = build._sha256(repo / "clip.avi")
    out = tmp_path / "out"
    devset = make_devset(tmp_path, blob, sha)
    args = ["--out", str(out), "--devset", str(devset), "--repo", f"someone/source={repo}"]
    assert build.main(args) == 0
    assert (out / "tiny" / "clip.avi").read_bytes() == (repo / "clip.avi").read_bytes()
    assert (out / "tiny" / "scene.yaml").is_file() and (out / "tiny" / "labels.json").is_file()

    trimmed = make_devset(tmp_path / "t", blob, sha, trim={"first_frame": 5, "last_frame": 14})
    assert (
        build.main(["--out", str(out), "--devset", str(trimmed), "--mirrors", str(tmp_path)]) == 1
    )
    assert (
        build.main(
            ["--out", str(out), "--devset", str(trimmed), "--repo", f"someone/source={repo}"]
        )
        == 0
    )
    assert frame_count(out / "tiny" / "clip.avi") == 10
    assert not (out / "tiny" / "source.avi").exists()


def test_build_refuses_a_changed_source(tmp_path: Path) -> None:
    build = load_script()
    repo, blob = make_source_repo(tmp_path)
    devset = make_devset(tmp_path, blob, "0" * 64)
    args = [
        "--out",
        str(tmp_path / "out"),
        "--devset",
        str(devset),
        "--repo",
        f"someone/source={repo}",
    ]
    assert build.main(args) == 2
