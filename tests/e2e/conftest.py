"""Browser tests: Playwright for Python driving the Debian chromium (never a downloaded one)
against the real control-center app, served by uvicorn on a real Redis.

The Redis URL comes from ``REDIS_URL``, else ``redis://127.0.0.1:$REDIS_PORT/0`` (``make
test`` starts Redis with ``make infra-up``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright
from prometheus_client import CollectorRegistry

from services.common.queue import ControlCenterQueue, open_queue
from services.control_center.api import create_app
from services.control_center.operators import OperatorStore, add_operator
from services.control_center.server import AppServer
from services.control_center.workflow import Role

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
T = TypeVar("T")


def redis_url() -> str:
    port = os.environ.get("REDIS_PORT", "6379")
    return os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{port}/0"


@dataclass
class ControlCenter:
    """A control center running in a thread of its own, with its own event loop.

    ``run(coro)`` runs a coroutine on that loop (for example a write to ``queue``), so the
    test's writes go through the same Redis as the app's reads.
    """

    url: str
    queue: ControlCenterQueue
    loop: asyncio.AbstractEventLoop
    evidence_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        done: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return done.result(timeout=30)


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
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="control-center", daemon=True)
    thread.start()

    async def start() -> tuple[AppServer, ControlCenterQueue]:
        queue = open_queue(redis_url(), prefix=prefix)
        app = create_app(
            queue=queue,
            operators=OperatorStore(operators),
            registry=CollectorRegistry(),
            evidence_dir=evidence,
        )
        server = AppServer(app, host="127.0.0.1", port=0)
        await server.start()
        return server, queue

    server, queue = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    cc = ControlCenter(
        url=f"http://127.0.0.1:{server.port}",
        queue=queue,
        loop=loop,
        evidence_dir=evidence,
        tokens=tokens,
    )
    try:
        yield cc
    finally:
        cc.run(server.stop())
        cc.run(queue.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
