"""citybrain as a user installs it: a built wheel in a fresh virtualenv, outside the checkout.

The wheel and its dependencies come from ``uv.lock`` only (hashes checked), and the commands
run from a temporary directory, so nothing can be found through the checkout: the default
configs must come from inside the package.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
# Building pulls setuptools into an isolated environment; installing copies from uv's cache.
INSTALL_TIMEOUT_S = 300


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_installed_outside_the_checkout_simulates_and_checks_configs(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    # A copy of the tracked tree, so the build sees exactly what a clone holds.
    tracked = run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run(UV, "build", "--wheel", "--out-dir", dist, cwd=source)
    (wheel,) = dist.glob("citybrain-*.whl")

    requirements = tmp_path / "requirements.txt"
    run(UV, "export", "--frozen", "--no-dev", "--no-emit-project", "-o", requirements, cwd=ROOT)
    venv = tmp_path / "venv"
    run(UV, "venv", "--python", sys.executable, venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    install = (UV, "pip", "install", "--python", python)
    run(*install, "--require-hashes", "-r", requirements, cwd=tmp_path)
    run(*install, "--no-deps", wheel, cwd=tmp_path)

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    citybrain = venv / "bin" / "citybrain"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    located = run(python, "-c", "import services; print(services.__file__)", cwd=workdir, env=env)
    assert Path(located.strip()).is_relative_to(venv), located

    out = workdir / "out"
    run(citybrain, "simulate", "--camera", "wuzhen-cam-01", "--seconds", "2", "--out", out,
        cwd=workdir, env=env)  # fmt: skip
    assert (out / "video.avi").stat().st_size > 0
    assert yaml.safe_load((out / "scene.yaml").read_text())["camera_id"] == "wuzhen-cam-01"
    checked = run(citybrain, "config", "check", out / "scene.yaml", cwd=workdir, env=env)
    assert "ok" in checked and "SceneConfig" in checked

    # A config directory of the user's own replaces the packaged one.
    own = workdir / "own-configs"
    run(citybrain, "config", "defaults", own, cwd=workdir, env=env)
    catalogue = own / "cities.yaml"
    catalogue.write_text(catalogue.read_text().replace("wuzhen-cam-01", "wuzhen-cam-91"))
    (own / "scenes" / "wuzhen-cam-01.yaml").rename(own / "scenes" / "wuzhen-cam-91.yaml")
    scene = own / "scenes" / "wuzhen-cam-91.yaml"
    scene.write_text(scene.read_text().replace("wuzhen-cam-01", "wuzhen-cam-91"))
    run(citybrain, "--config-dir", own, "simulate", "--camera", "wuzhen-cam-91", "--seconds", "1",
        "--out", workdir / "own", cwd=workdir, env=env)  # fmt: skip
    assert yaml.safe_load((workdir / "own" / "scene.yaml").read_text())["camera_id"] == (
        "wuzhen-cam-91"
    )
