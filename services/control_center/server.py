"""Serving the control-center app with uvicorn inside a process that owns its own shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

# Open streams are ended by the app's shutdown; anything else gets this long to finish.
GRACEFUL_SHUTDOWN_S = 3


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: ``citybrain run`` and ``control-center``
    stop it themselves on SIGINT/SIGTERM, together with everything else they run."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AppServer:
    """``app`` on ``host:port``; :meth:`start` binds (raising ``OSError`` if the port is
    taken) and returns once it serves, :meth:`stop` ends it."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None
        self.host, self.port = host, port

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the control-center server stopped while starting")
            await asyncio.sleep(0.02)

    async def wait(self) -> None:
        """Until the server stops by itself (it failed)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
