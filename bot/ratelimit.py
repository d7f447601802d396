"""Per-user limits of one process: the message rate limit shared by every surface, and the daily quotas of the tools
that have side effects (tickets, escalations).

A "user" here is :attr:`IncomingMessage.sender`: the Slack or Discord user, or a web client's token or address.
The counts live in the process: with several processes, a user gets up to the limit in each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

_SWEEP_EVERY = 1_000  # calls between sweeps that forget users who went quiet
DAY_S = 86_400.0


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
        if self.remaining(key) == 0:
            return False
        self.add(key)
        return True

    def remaining(self, key: str) -> int | None:
        """How many more ``key`` may have in the current window; ``None`` when there is no limit."""
        if self._messages <= 0:
            return None
        now = self._clock()
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._sweep(now)
        times = self._seen.get(key)
        if times is None:
            return self._messages
        while times and times[0] <= now - self._period:
            times.popleft()
        return max(self._messages - len(times), 0)

    def add(self, key: str) -> None:
        """Count one for ``key`` without asking: for work that was checked with :meth:`remaining` and then done."""
        if self._messages > 0:
            self._seen.setdefault(key, deque()).append(self._clock())

    def _sweep(self, now: float) -> None:
        horizon = now - self._period
        for key in [k for k, times in self._seen.items() if not times or times[-1] <= horizon]:
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True, slots=True)
class Quotas:
    """How many side effects a user and a session may cause (``config.yaml``'s ``quotas``); 0 means no limit.

    Attributes:
        tickets_per_day: tickets one user may file in 24 hours.
        tickets_per_session: tickets one session may file in its life.
        escalations_per_day: hand-overs to a person one user may ask for in 24 hours.
        escalations_per_session: hand-overs one session may ask for in its life; besides, a session has at most
            one open at a time.
        escalation_open_for: seconds an escalation stays open (no new one in its session) unless resolved sooner.
    """

    tickets_per_day: int = 0
    tickets_per_session: int = 0
    escalations_per_day: int = 0
    escalations_per_session: int = 0
    escalation_open_for: float = DAY_S
