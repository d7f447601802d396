"""``sqlite:///path.db``: the inbox as a table in the store's own database file.

One process that is killed and restarted answers what it had accepted; several processes on one host share the
file (WAL, immediate transactions). A worker finds entries another process recorded by polling every
``INBOX_POLL_S``; entries recorded in its own process wake it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiosqlite

from bot.constants import DEDUPE_TTL_S, INBOX_POLL_S, INBOX_VISIBILITY_S
from bot.errors import StoreUnavailable
from bot.inbox.base import Delivery, InboxCounters, InboxStats, PendingEntry, Route, decode_entry, encode_entry
from bot.memory.codec import MessageCodec
from bot.memory.sqlite_file import SqliteFile
from bot.messages import IncomingMessage

log = logging.getLogger("supportbot.inbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    body TEXT NOT NULL,
    enqueued REAL NOT NULL,
    owner TEXT,
    claimed_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    reply_ref TEXT
);
CREATE INDEX IF NOT EXISTS inbox_session ON inbox (session_id, id);
-- Messages recorded recently, so a platform's retry of one never makes a second entry.
CREATE TABLE IF NOT EXISTS inbox_recorded (
    session_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (session_id, event_id)
) WITHOUT ROWID;
-- Entries given up after too many attempts, kept for an operator.
CREATE TABLE IF NOT EXISTS inbox_dead (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""

# The oldest unanswered entry of each session that nobody holds; entries without a session are each their own head.
_HEADS = """
SELECT id, owner FROM inbox AS i
WHERE claimed_until <= ?
  AND (session_id = '' OR NOT EXISTS (SELECT 1 FROM inbox AS j WHERE j.session_id = i.session_id AND j.id < i.id))
ORDER BY id LIMIT ?
"""


class SqliteInbox:
    """The inbox in a table of the SQLite file at ``path``."""

    def __init__(
        self,
        path: str,
        *,
        consumer: str = "local",
        codec: MessageCodec | None = None,
        visibility: float = INBOX_VISIBILITY_S,
        dedupe_ttl: float = DEDUPE_TTL_S,
        poll: float = INBOX_POLL_S,
    ) -> None:
        self.consumer = consumer
        self.counters = InboxCounters()
        self._codec = codec or MessageCodec()
        self._visibility = visibility
        self._dedupe_ttl = dedupe_ttl
        self._poll = poll
        # A turn's lease is no longer than the visibility timeout, so a longer wait means a stuck process.
        self._file = SqliteFile(path, schema=_SCHEMA, what="sqlite inbox", busy_wait=visibility)
        self._tx = self._file.transaction
        self._arrived = asyncio.Event()
        self._recovered = False

    async def put(self, message: IncomingMessage, *, route: Route, session_id: str) -> bool:
        now = time.time()
        body = self._codec.seal(encode_entry(message, route=route, session_id=session_id))
        async with self._tx() as db:
            await db.execute("DELETE FROM inbox_recorded WHERE expires <= ?", (now,))
            cur = await db.execute(
                "INSERT INTO inbox_recorded (session_id, event_id, expires) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (session_id, message.event_id, now + self._dedupe_ttl),
            )
            if cur.rowcount == 0:
                self.counters.already_recorded += 1
                return False
            await db.execute(
                "INSERT INTO inbox (session_id, event_id, platform, body, enqueued) VALUES (?, ?, ?, ?, ?)",
                (session_id, message.event_id, message.platform, body, now),
            )
        self.counters.recorded += 1
        self._arrived.set()
        return True

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        if not self._recovered:
            # A restart under the same name: what the previous process held is this process's to answer, now.
            async with self._tx() as db:
                await db.execute("UPDATE inbox SET claimed_until = 0 WHERE owner = ?", (self.consumer,))
            self._recovered = True
        while True:
            self._arrived.clear()
            taken = await self._claim(limit)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            try:
                await asyncio.wait_for(self._arrived.wait(), min(self._poll, remaining))
            except TimeoutError:
                pass

    async def _claim(self, limit: int) -> list[Delivery]:
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(_HEADS, (now, limit))
            previous = {row[0]: row[1] for row in await cur.fetchall()}
            if not previous:
                return []
            marks = ",".join("?" * len(previous))
            cur = await db.execute(
                f"UPDATE inbox SET attempts = attempts + 1, claimed_until = ?, owner = ? WHERE id IN ({marks}) "
                "RETURNING id, session_id, body, enqueued, attempts, reply_ref",
                (now + self._visibility, self.consumer, *previous),
            )
            rows = sorted(await cur.fetchall(), key=lambda r: r["id"])
            deliveries = []
            for row in rows:
                try:
                    deliveries.append(self._delivery(row, previous=previous[row["id"]]))
                except (ValueError, StoreUnavailable) as exc:
                    # Not retried forever: kept aside, as written, for an operator (a wrong encryption key makes
                    # every entry unreadable; they can be replayed once the key is right).
                    log.error("inbox entry %s cannot be read (%s); set aside in inbox_dead", row["id"], exc)
                    await self._set_aside(db, int(row["id"]), reason=f"unreadable: {exc}")
        return deliveries

    def _delivery(self, row: Any, *, previous: str | None) -> Delivery:
        message, route, session_id = decode_entry(self._codec.unseal(row["body"]))
        if row["attempts"] > 1:
            self.counters.redeliveries += 1
            if previous not in (None, self.consumer):
                self.counters.claimed_from_dead += 1
        return Delivery(
            entry_id=str(row["id"]),
            message=message,
            route=route,
            session_id=session_id,
            enqueued=row["enqueued"],
            attempts=row["attempts"],
            reply_ref=row["reply_ref"],
        )

    async def extend(self, deliveries: Sequence[Delivery]) -> set[str]:
        if not deliveries:
            return set()
        ids = [int(d.entry_id) for d in deliveries]
        marks = ",".join("?" * len(ids))
        async with self._tx() as db:
            cur = await db.execute(
                f"UPDATE inbox SET claimed_until = ? WHERE owner = ? AND id IN ({marks}) RETURNING id",
                (time.time() + self._visibility, self.consumer, *ids),
            )
            return {str(row[0]) for row in await cur.fetchall()}

    async def done(self, delivery: Delivery) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM inbox WHERE id = ?", (int(delivery.entry_id),))
        self._arrived.set()

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        ids = [int(d.entry_id) for d in deliveries]
        marks = ",".join("?" * len(ids))
        async with self._tx() as db:
            await db.execute(
                f"UPDATE inbox SET owner = NULL, claimed_until = 0 WHERE owner = ? AND id IN ({marks})",
                (self.consumer, *ids),
            )

    async def postpone(self, delivery: Delivery) -> None:
        return None  # its claim runs out by itself

    async def abandon(self, delivery: Delivery, *, reason: str) -> None:
        async with self._tx() as db:
            await self._set_aside(db, int(delivery.entry_id), reason=reason)
        self._arrived.set()

    async def _set_aside(self, db: aiosqlite.Connection, entry_id: int, *, reason: str) -> None:
        """Move an entry to ``inbox_dead`` (inside the caller's transaction)."""
        await db.execute(
            "INSERT OR IGNORE INTO inbox_dead (id, session_id, body, reason, at) "
            "SELECT id, session_id, body, ?, ? FROM inbox WHERE id = ?",
            (reason, time.time(), entry_id),
        )
        await db.execute("DELETE FROM inbox WHERE id = ?", (entry_id,))
        self.counters.abandoned += 1

    async def note_reply(self, delivery: Delivery, ref: str) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE inbox SET reply_ref = ? WHERE id = ?", (ref, int(delivery.entry_id)))

    async def stats(self) -> InboxStats:
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT COUNT(*), MIN(enqueued), COALESCE(SUM(claimed_until > ?), 0) FROM inbox", (now,)
            )
            row = await cur.fetchone()
        assert row is not None
        depth, oldest, in_flight = row[0], row[1], row[2]
        return InboxStats(depth=depth, oldest_age=0.0 if oldest is None else now - oldest, in_flight=in_flight)

    async def pending(self, *, limit: int = 100) -> list[PendingEntry]:
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT id, platform, session_id, event_id, enqueued, owner, claimed_until, attempts "
                "FROM inbox ORDER BY id LIMIT ?",
                (limit,),
            )
            rows = await cur.fetchall()
        return [
            PendingEntry(
                entry_id=str(r["id"]),
                platform=r["platform"],
                session_id=r["session_id"],
                event_id=r["event_id"],
                enqueued=r["enqueued"],
                owner=r["owner"] if r["claimed_until"] > now else None,
                attempts=r["attempts"],
            )
            for r in rows
        ]

    async def ping(self) -> None:
        async with self._tx() as db:
            await db.execute("SELECT 1 FROM inbox LIMIT 1")

    async def aclose(self) -> None:
        await self._file.aclose()
