"""Operator accounts: a YAML file of names, roles and Argon2id hashes of their tokens.

A token is ``cb_<key id>_<secret>``: the key id finds the one account to check, so a
request costs one hash, never one per operator. The file holds only the hash. The server
reloads the file when it changes, so ``citybrain operators add`` takes effect at once.

The file (default ``configs/operators.yaml``)::

    open_reads: false        # true: reads need no token (writes always do)
    operators:
      - name: li.wei
        role: operator
        key_id: 3f9a1c2b
        token_hash: $argon2id$v=19$m=19456,t=2,p=1$...
        created_ts_ms: 1700000000000
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Annotated

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.common.config.loader import read_yaml, validate_data
from services.control_center.workflow import Role

DEFAULT_OPERATORS_PATH = Path("configs/operators.yaml")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_TOKEN_RE = re.compile(r"^cb_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

# OWASP's minimum for Argon2id (19 MiB, 2 passes): tokens are 256 random bits, so the hash
# only has to make a stolen file useless, and a request must not wait long for it.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
# A verified token is remembered (by its SHA-256) this long, so a dashboard's requests do
# not each pay for Argon2; removing the operator ends it at once (the file is reloaded).
VERIFIED_TTL_S = 300.0

OperatorName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class Operator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: OperatorName
    role: Role
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    token_hash: str = Field(min_length=20, max_length=512)
    created_ts_ms: int = Field(ge=0)


class OperatorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open_reads: bool = Field(default=False, description="reads need no token when true")
    operators: list[Operator] = Field(default_factory=list)


def load_operators(path: Path) -> OperatorsFile:
    """The file's content; a missing file is an empty one. Errors name the YAML key."""
    if not path.exists():
        return OperatorsFile()
    return validate_data(OperatorsFile, read_yaml(path) or {}, source=str(path))


def save_operators(path: Path, content: OperatorsFile) -> None:
    """Write the file atomically, readable by its owner only (it holds token hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(content.model_dump(mode="json"), out, sort_keys=False)
    tmp.replace(path)


def add_operator(path: Path, name: str, role: Role) -> str:
    """Add ``name`` with ``role`` to the file and return its new token (shown only once)."""
    if not re.match(NAME_PATTERN, name):
        raise ValueError(
            f"operator name {name!r}: letters, digits and . _ @ - only, up to 64 characters"
        )
    content = load_operators(path)
    if any(o.name == name for o in content.operators):
        raise ValueError(f"operator {name!r} already exists; remove it first to issue a new token")
    key_id = secrets.token_hex(8)
    token = f"cb_{key_id}_{secrets.token_urlsafe(32)}"
    operator = Operator(
        name=name,
        role=role,
        key_id=key_id,
        token_hash=_HASHER.hash(token),
        created_ts_ms=int(time.time() * 1000),
    )
    content.operators.append(operator)
    save_operators(path, content)
    return token


def replace_operator(path: Path, name: str, role: Role) -> str:
    """Add ``name``, removing an earlier account of that name first; returns the token."""
    content = load_operators(path)
    kept = [o for o in content.operators if o.name != name]
    save_operators(path, content.model_copy(update={"operators": kept}))
    return add_operator(path, name, role)


def remove_operator(path: Path, name: str) -> None:
    content = load_operators(path)
    kept = [o for o in content.operators if o.name != name]
    if len(kept) == len(content.operators):
        raise ValueError(f"no operator {name!r} in {path}")
    save_operators(path, content.model_copy(update={"operators": kept}))


class OperatorStore:
    """Verifies bearer tokens against the operators file, reloading it when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._content = OperatorsFile()
        self._verified: dict[bytes, tuple[Operator, float]] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        with self._lock:
            if stamp == self._stamp:
                return
            self._content = load_operators(self.path)
            self._stamp = stamp
            self._verified.clear()

    @property
    def open_reads(self) -> bool:
        self._reload()
        return self._content.open_reads

    def operators(self) -> list[Operator]:
        self._reload()
        return list(self._content.operators)

    def recently_verified(self, token: str) -> Operator | None:
        """The owner of ``token`` if it was verified in the last few minutes (no Argon2)."""
        self._reload()
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            cached = self._verified.get(digest)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def verify(self, token: str) -> Operator | None:
        """The operator that owns ``token``, or ``None``. Costs one Argon2 check at most."""
        cached = self.recently_verified(token)
        if cached is not None:
            return cached
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        match = _TOKEN_RE.match(token)
        if match is None:
            return None
        owner = next((o for o in self._content.operators if o.key_id == match[1]), None)
        if owner is None:
            return None
        try:
            _HASHER.verify(owner.token_hash, token)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            self._verified[digest] = (owner, now + VERIFIED_TTL_S)
        return owner
