"""A control center served by uvicorn on an event loop in a thread of its own, for tests
that drive it from synchronous code (a browser through Playwright, schemathesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from services.common.queue import ControlCenterQueue
from services.control_center.api import create_app
from services.control_center.operators import OperatorStore
from services.control_center.server import AppServer

T = TypeVar("T")


@dataclass
class ThreadedControlCenter:
    """``run(coro)`` runs a coroutine on the server's loop (a write to ``queue``, say), so a
    test's writes use the same queue handle as the app's reads."""

    url: str
    queue: ControlCenterQueue
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        done: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return done.result(timeout=30)


@contextmanager
def serve_in_thread(
    *, open_queue: Callable[[], ControlCenterQueue], operators: Path, evidence_dir: Path
) -> Iterator[ThreadedControlCenter]:
    """Serve the app on 127.0.0.1 (a free port) over the queue ``open_queue`` returns,
    opened on the server's loop; stops it all on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="control-center", daemon=True)
    thread.start()

    async def start() -> tuple[AppServer, ControlCenterQueue]:
        queue = open_queue()
        app = create_app(
            queue=queue,
            operators=OperatorStore(operators),
            registry=CollectorRegistry(),
            evidence_dir=evidence_dir,
        )
        server = AppServer(app, host="127.0.0.1", port=0)
        await server.start()
        return server, queue

    server, queue = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    served = ThreadedControlCenter(url=f"http://127.0.0.1:{server.port}", queue=queue, loop=loop)
    try:
        yield served
    finally:
        served.run(server.stop())
        served.run(queue.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
