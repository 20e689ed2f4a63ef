"""The faust-streaming, mode-streaming and aiokafka versions the internals were tested with.

Any other version may have renamed or changed one of the private members listed in
:mod:`services.dispatcher.faust_internals`, and that shows as lost or stuck messages, not as
an import error; so ``citybrain dispatch`` refuses to start on one. These are the versions
``pyproject.toml`` pins.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata

TESTED_VERSIONS: Mapping[str, str] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
}


class UntestedVersionError(RuntimeError):
    """An installed version the internals were not tested with; ``str()`` is one line."""


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_tested_versions() -> None:
    """Raise :class:`UntestedVersionError` naming every untested (or missing) version.

    >>> check_tested_versions()  # the locked virtualenv has exactly the tested ones
    """
    problems = []
    for distribution, tested in TESTED_VERSIONS.items():
        found = installed_version(distribution)
        if found != tested:
            problems.append(f"{distribution} {found or '(not installed)'} (tested: {tested})")
    if problems:
        raise UntestedVersionError(
            "untested " + ", ".join(problems) + ": the dispatcher overrides their private members "
            "(services/dispatcher/faust_internals); install the locked versions with `make venv`"
        )
