"""The one base of every config model: unknown keys are errors, and a loaded config is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: a misspelt key fails validation, naming the key, rather than being
    ignored; and nothing changes a config once it is loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
