"""Ports for the services a test starts: below the ephemeral range, checked free."""

from __future__ import annotations

import random
import socket

# Blocks of ports below Linux's ephemeral range (32768-60999): there no client connection,
# nor one of its TIME_WAIT remains, can take a port between the check and a service's bind.
# The stack test's services start seconds after their ports are chosen, while their own
# Kafka clients open connections; a port taken from the ephemeral range was taken from
# under the simulator once.
PORT_BLOCKS = range(20_000, 32_000, 20)
_handed_out: set[int] = set()  # blocks already given to a test of this session


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports below the ephemeral range that nothing
    holds now."""

    def bindable(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    for base in random.sample(PORT_BLOCKS, len(PORT_BLOCKS)):
        if base not in _handed_out and all(bindable(base + i) for i in range(size)):
            _handed_out.add(base)
            return base
    raise RuntimeError(f"no {size} free consecutive ports in {PORT_BLOCKS}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now (see :func:`free_port_block`)."""
    return free_port_block(1)
