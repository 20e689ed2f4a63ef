"""Bearer-token authentication for the API, with failed attempts limited per client address."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from services.control_center.operators import Operator, OperatorStore
from services.control_center.workflow import Role

# Client addresses whose failures are remembered at most: bounds memory under a scan from
# many addresses (the oldest is forgotten first).
MAX_TRACKED_CLIENTS = 10_000


class AuthError(Exception):
    """A request that must be refused: ``status`` is 401, 403 or 429."""

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


class FailureLimiter:
    """At most ``max_failures`` failed token checks per client in ``window_s``, as a
    sliding window, after which the client gets 429 until the oldest failure expires."""

    def __init__(self, *, max_failures: int, window_s: float) -> None:
        self._max = max_failures
        self._window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def blocked_for_s(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self._max:
            return 0.0
        return times[0] + self._window_s - now

    def failed(self, client: str) -> None:
        times = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        times.append(time.monotonic())
        while len(self._failures) > MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Authenticator:
    store: OperatorStore
    limiter: FailureLimiter

    async def authenticate(self, token: str | None, *, client: str) -> Operator:
        """The operator who owns a bearer ``token``, or :class:`AuthError`."""
        wait_s = self.limiter.blocked_for_s(client)
        if wait_s > 0:
            raise AuthError(
                429,
                "too many failed sign-in attempts; try again later",
                retry_after_s=int(wait_s) + 1,
            )
        if not token:
            raise AuthError(401, "sign in: send Authorization: Bearer <token>")
        # Argon2 is CPU work: keep it off the event loop, and skip it for a token seen lately.
        operator = self.store.recently_verified(token) or await asyncio.to_thread(
            self.store.verify, token
        )
        if operator is None:
            self.limiter.failed(client)
            raise AuthError(401, "unknown or revoked token")
        return operator

    async def reader(self, token: str | None, *, client: str) -> Operator | None:
        """Who reads; ``None`` for an anonymous reader when the file allows open reads."""
        if token is None and self.store.open_reads:
            return None
        return await self.authenticate(token, client=client)

    async def writer(self, token: str | None, *, client: str) -> Operator:
        operator = await self.authenticate(token, client=client)
        if operator.role is Role.VIEWER:
            raise AuthError(403, f"{operator.name} is a viewer and may not change entries")
        return operator
