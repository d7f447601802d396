"""Per-user message rate limit, shared by every surface of one process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

_SWEEP_EVERY = 1_000  # calls between sweeps that forget users who went quiet


class RateLimiter:
    """At most ``messages`` per ``period`` seconds per key (a sliding window). ``messages == 0`` allows all."""

    def __init__(self, *, messages: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._messages = messages
        self._period = period
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._calls = 0

    def allow(self, key: str) -> bool:
        """Count one message for ``key``; False when it is over the limit (and then it is not counted)."""
        if self._messages <= 0:
            return True
        now = self._clock()
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self._period:
            times.popleft()
        if len(times) >= self._messages:
            return False
        times.append(now)
        return True

    def _sweep(self, now: float) -> None:
        horizon = now - self._period
        for key in [k for k, times in self._seen.items() if not times or times[-1] <= horizon]:
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
