"""A dev-set clip on disk: ``<clip>/labels.json`` beside its ``scene.yaml`` and video.

``labels.json`` is written by hand from looking at frames (see ``devset/README.md``)::

    {"schema": 1, "clip": "lake-cheyenne", "video": "clip.mp4", "fps": 24.03,
     "frames": 182, "final": true,
     "signal": [{"first_frame": 0, "last_frame": 181, "state": "red"}],
     "red_light": [{"frame": 54, "bbox_xywh": [368, 189, 84, 49], "note": "..."}],
     "illegal_parking": [], "lawful_stops": [], "notes": ["..."]}

Frames are 0-based indexes of decoded frames. A signal span marked ``unknown`` (a lamp hidden
or unreadable by eye) is not scored. Labels still being checked say ``"final": false``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.common.config.loader import ConfigError, load_model
from services.common.config.scene import SceneConfig

LABELS_FILE = "labels.json"
SCENE_FILE = "scene.yaml"

FrameIndex = Annotated[int, Field(ge=0)]
BoxXYWH = tuple[int, int, Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
SignalLabel = Literal["red", "amber", "green", "unknown"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SignalSpan(_Strict):
    first_frame: FrameIndex
    last_frame: FrameIndex
    state: SignalLabel

    @model_validator(mode="after")
    def verify_order(self) -> Self:
        if self.last_frame < self.first_frame:
            raise ValueError("last_frame must not be before first_frame")
        return self


class LabelledCrossing(_Strict):
    """A vehicle whose centre crosses the stop line on red, at ``frame``."""

    frame: FrameIndex
    bbox_xywh: BoxXYWH | None = None
    note: str = ""


class LabelledParking(_Strict):
    """A stay in a no-parking zone; ``frame`` is where the dwell reaches ``max_dwell_s``."""

    frame: FrameIndex
    zone: str
    bbox_xywh: BoxXYWH | None = None
    note: str = ""


class LawfulStop(_Strict):
    """A vehicle that waits (at the line, in traffic) and must raise nothing."""

    first_frame: FrameIndex
    last_frame: FrameIndex
    bbox_xywh: BoxXYWH | None = None
    note: str = ""


class ClipLabels(_Strict):
    schema_version: Literal[1] = Field(alias="schema")
    clip: str = Field(pattern=r"^[a-z0-9-]+$")
    video: str = Field(min_length=1, description="the video's file name, beside labels.json")
    fps: float = Field(gt=0, le=240)
    frames: int = Field(gt=0, description="decodable frames in the video")
    final: bool = Field(description="false while the labels are still being checked")
    signal: list[SignalSpan] = Field(default_factory=list)
    red_light: list[LabelledCrossing] = Field(default_factory=list)
    # Crossings that cannot be told from the frames (a rider who creeps to straddle the line):
    # a detection matching one is neither a hit nor a false alarm.
    red_light_uncertain: list[LabelledCrossing] = Field(default_factory=list)
    illegal_parking: list[LabelledParking] = Field(default_factory=list)
    lawful_stops: list[LawfulStop] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @field_validator("signal")
    @classmethod
    def verify_signal_spans(cls, spans: list[SignalSpan], info: ValidationInfo) -> list[SignalSpan]:
        previous = -1
        for span in spans:
            if span.first_frame <= previous:
                raise ValueError("spans must be in order and must not overlap")
            previous = span.last_frame
        _verify_inside(previous, info, what="a span ends")
        return spans

    @field_validator("red_light", "red_light_uncertain", "illegal_parking")
    @classmethod
    def verify_events_inside_clip(
        cls, events: list[LabelledCrossing] | list[LabelledParking], info: ValidationInfo
    ) -> list[LabelledCrossing] | list[LabelledParking]:
        _verify_inside(max((e.frame for e in events), default=-1), info, what="an event is")
        return events


def _verify_inside(frame: int, info: ValidationInfo, *, what: str) -> None:
    frames = info.data.get("frames")  # absent when ``frames`` itself failed validation
    if frames is not None and frame >= frames:
        raise ValueError(f"{what} after the last frame ({frames - 1})")


@dataclass(frozen=True, slots=True)
class DevClip:
    """One clip ready to replay: its labels, its scene and where its video is."""

    name: str
    labels: ClipLabels
    scene: SceneConfig
    video_path: Path


def clip_dirs(root: Path) -> list[Path]:
    """The clip folders under ``root`` (those holding a labels file), by name."""
    return sorted(p.parent for p in root.glob(f"*/{LABELS_FILE}") if p.parent.name[0] not in "._")


def load_clip(directory: Path) -> DevClip:
    """Read one clip folder; raises ``ConfigError`` (one line per problem, key path first)."""
    labels = load_model(ClipLabels, directory / LABELS_FILE)
    if labels.clip != directory.name:
        raise ConfigError(
            str(directory / LABELS_FILE), [f"clip: {labels.clip!r} is not the folder's name"]
        )
    scene = load_model(SceneConfig, directory / SCENE_FILE)
    return DevClip(
        name=labels.clip, labels=labels, scene=scene, video_path=directory / labels.video
    )
