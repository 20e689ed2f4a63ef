"""Polling a service that is not up yet never raises, whatever answers on its port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from services.stack.processes import http_ok, http_text


@pytest.fixture
def echo_url() -> Iterator[str]:
    """A port that sends the request back, as a port connected to itself does."""
    server = socket.create_server(("127.0.0.1", 0))

    def echo_once() -> None:
        connection, _ = server.accept()
        with connection:
            connection.sendall(connection.recv(4096))

    thread = threading.Thread(target=echo_once, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/metrics"
    thread.join(timeout=5)
    server.close()


def test_a_port_that_reads_back_the_request_is_not_healthy(echo_url: str) -> None:
    assert http_ok(echo_url) is False


def test_a_port_that_reads_back_the_request_has_no_metrics(echo_url: str) -> None:
    assert http_text(echo_url) is None
