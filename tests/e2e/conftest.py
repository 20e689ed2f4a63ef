"""Browser tests: Playwright for Python driving the Debian chromium (never a downloaded one)
against the real control-center app, served by uvicorn on a real Redis.

The Redis URL comes from ``REDIS_URL``, else ``redis://127.0.0.1:$REDIS_PORT/0`` (``make
test`` starts Redis with ``make infra-up``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from services.common.queue import ControlCenterQueue, open_queue
from services.control_center.operators import add_operator
from services.control_center.workflow import Role
from tests.threaded_control_center import ThreadedControlCenter, serve_in_thread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
T = TypeVar("T")


def redis_url() -> str:
    port = os.environ.get("REDIS_PORT", "6379")
    return os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{port}/0"


@dataclass
class ControlCenter:
    """The served app (``url``, ``queue``, ``run``) and who may sign in to it."""

    served: ThreadedControlCenter
    evidence_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def queue(self) -> ControlCenterQueue:
        return self.served.queue

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.served.run(coro)


@pytest.fixture
def control_center(tmp_path: Path) -> Iterator[ControlCenter]:
    operators = tmp_path / "operators.yaml"
    tokens = {
        "li.wei": add_operator(operators, "li.wei", Role.OPERATOR),
        "zhang.min": add_operator(operators, "zhang.min", Role.SUPERVISOR),
    }
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    prefix = f"e2e-{uuid.uuid4().hex[:10]}"
    with serve_in_thread(
        open_queue=lambda: open_queue(redis_url(), prefix=prefix),
        operators=operators,
        evidence_dir=evidence,
    ) as served:
        yield ControlCenter(served=served, evidence_dir=evidence, tokens=tokens)


# Module scope, not session: Playwright's sync API holds an event loop open on the main
# thread while it runs, and later tests' asyncio.run() refuses to start under it.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
