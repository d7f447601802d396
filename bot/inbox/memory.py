"""``memory://``: an in-process inbox with the same semantics as the durable ones, for tests and throwaway runs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bot.constants import DEDUPE_TTL_S, INBOX_VISIBILITY_S
from bot.inbox.base import Delivery, InboxCounters, InboxStats, PendingEntry, Route, dedupe_key
from bot.messages import IncomingMessage


@dataclass(slots=True)
class _Entry:
    entry_id: int
    message: IncomingMessage
    route: Route
    session_id: str
    enqueued: float
    owner: str | None = None
    claimed_until: float = 0.0
    attempts: int = 0
    reply_ref: str | None = None


class MemoryInbox:
    """Entries in a dict, lost with the process (so only the platform's own retries protect them)."""

    def __init__(
        self, *, consumer: str = "local", visibility: float = INBOX_VISIBILITY_S, dedupe_ttl: float = DEDUPE_TTL_S
    ) -> None:
        self.consumer = consumer
        self.counters = InboxCounters()
        self._visibility = visibility
        self._dedupe_ttl = dedupe_ttl
        self._entries: dict[int, _Entry] = {}
        self._recorded: dict[str, float] = {}  # dedupe key -> expiry
        self._ids = itertools.count(1)
        self._arrived = asyncio.Event()
        self.dead: list[tuple[Delivery, str]] = []

    async def put(self, message: IncomingMessage, *, route: Route, session_id: str) -> bool:
        now = time.time()
        key = dedupe_key(session_id, message.event_id)
        if self._recorded.get(key, 0.0) > now:
            self.counters.already_recorded += 1
            return False
        if len(self._recorded) > 10_000:
            self._recorded = {k: t for k, t in self._recorded.items() if t > now}
        self._recorded[key] = now + self._dedupe_ttl
        entry_id = next(self._ids)
        self._entries[entry_id] = _Entry(entry_id, message, dict(route), session_id, now)
        self.counters.recorded += 1
        self._arrived.set()
        return True

    def _heads(self, now: float) -> list[_Entry]:
        heads: list[_Entry] = []
        sessions: set[str] = set()
        for entry in self._entries.values():  # insertion order is arrival order
            first_of_session = not entry.session_id or entry.session_id not in sessions
            sessions.add(entry.session_id)
            if first_of_session and entry.claimed_until <= now:
                heads.append(entry)
        return heads

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        while True:
            now = time.time()
            taken = [self._claim(entry, now) for entry in self._heads(now)[:limit]]
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            self._arrived.clear()
            held = [e.claimed_until - now for e in self._entries.values() if e.claimed_until > now]
            try:
                await asyncio.wait_for(self._arrived.wait(), min([remaining, *held]))
            except TimeoutError:
                pass

    def _claim(self, entry: _Entry, now: float) -> Delivery:
        if entry.attempts:
            self.counters.redeliveries += 1
            if entry.owner != self.consumer:
                self.counters.claimed_from_dead += 1
        entry.owner = self.consumer
        entry.claimed_until = now + self._visibility
        entry.attempts += 1
        return Delivery(
            entry_id=str(entry.entry_id),
            message=entry.message,
            route=entry.route,
            session_id=entry.session_id,
            enqueued=entry.enqueued,
            attempts=entry.attempts,
            reply_ref=entry.reply_ref,
        )

    def _own(self, delivery: Delivery) -> _Entry | None:
        entry = self._entries.get(int(delivery.entry_id))
        return entry if entry is not None and entry.owner == self.consumer else None

    async def extend(self, deliveries: Sequence[Delivery]) -> set[str]:
        held: set[str] = set()
        until = time.time() + self._visibility
        for delivery in deliveries:
            entry = self._own(delivery)
            if entry is not None:
                entry.claimed_until = until
                held.add(delivery.entry_id)
        return held

    async def done(self, delivery: Delivery) -> None:
        self._entries.pop(int(delivery.entry_id), None)
        self._arrived.set()

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            entry = self._own(delivery)
            if entry is not None:
                entry.owner, entry.claimed_until = None, 0.0
        self._arrived.set()

    async def postpone(self, delivery: Delivery) -> None:
        return None  # its claim runs out by itself

    async def abandon(self, delivery: Delivery, *, reason: str) -> None:
        self.dead.append((delivery, reason))
        self.counters.abandoned += 1
        await self.done(delivery)

    async def note_reply(self, delivery: Delivery, ref: str) -> None:
        entry = self._entries.get(int(delivery.entry_id))
        if entry is not None:
            entry.reply_ref = ref

    async def stats(self) -> InboxStats:
        now = time.time()
        oldest = min((e.enqueued for e in self._entries.values()), default=now)
        in_flight = sum(1 for e in self._entries.values() if e.claimed_until > now)
        return InboxStats(depth=len(self._entries), oldest_age=now - oldest, in_flight=in_flight)

    async def pending(self, *, limit: int = 100) -> list[PendingEntry]:
        now = time.time()
        return [
            PendingEntry(
                entry_id=str(e.entry_id),
                platform=e.message.platform,
                session_id=e.session_id,
                event_id=e.message.event_id,
                enqueued=e.enqueued,
                owner=e.owner if e.claimed_until > now else None,
                attempts=e.attempts,
            )
            for e in list(self._entries.values())[:limit]
        ]

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
