"""Fixtures shared by the detector's replay tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.detector.synth import scene


@pytest.fixture
def scene_file(tmp_path: Path) -> Path:
    """The synthetic street's scene, as a file ``replay --scene`` reads."""
    path = tmp_path / "scene.yaml"
    path.write_text(json.dumps(scene().model_dump(mode="json")))
    return path
