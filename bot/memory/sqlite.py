"""``sqlite:///path.db``: the embedded, durable default. One file, safe for several processes (WAL, immediate locks)."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import aiosqlite

from bot.errors import LeaseLost, StoreUnavailable
from bot.memory.base import (
    AuditEntry,
    ClaimStatus,
    Entities,
    Entity,
    Lease,
    RecallItem,
    SessionContext,
    SessionMeta,
    SessionRecord,
    StoreLimits,
    SummaryWork,
    TurnEmbedding,
    TurnStart,
)
from bot.memory.codec import MessageCodec
from bot.memory.sqlite_file import SqliteFile
from bot.messages import StoredMessage
from bot.session import SessionKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    platform TEXT NOT NULL DEFAULT '',
    created REAL,
    last_active REAL,
    turns INTEGER NOT NULL DEFAULT 0,
    summary TEXT,
    lease_token INTEGER,
    lease_event TEXT,
    lease_expires REAL,
    seq INTEGER NOT NULL DEFAULT 0,
    summary_upto INTEGER NOT NULL DEFAULT 0
);
-- One store-wide fencing counter: a token is never reused, even after a session row is dropped.
CREATE TABLE IF NOT EXISTS fence (id INTEGER PRIMARY KEY CHECK (id = 1), token INTEGER NOT NULL);
INSERT OR IGNORE INTO fence (id, token) VALUES (1, 0);
CREATE INDEX IF NOT EXISTS sessions_last_active ON sessions (last_active);
-- Deleted sessions, fenced for a while: the last token handed out then, and the delivery then being answered.
CREATE TABLE IF NOT EXISTS erased (
    session_id TEXT PRIMARY KEY,
    fence INTEGER NOT NULL,
    event_id TEXT,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_users (
    session_id TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (session_id, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    session_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (session_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recall (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_session ON audit (session_id, id);
CREATE TABLE IF NOT EXISTS seen (
    session_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (session_id, event_id)
) WITHOUT ROWID;
"""

_CHILD_TABLES = ("messages", "session_users", "seen", "entities", "recall", "audit")
# Columns added after the first release, for databases created before them.
_ADDED_COLUMNS = {
    "seq": "ALTER TABLE sessions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
    "summary_upto": "ALTER TABLE sessions ADD COLUMN summary_upto INTEGER NOT NULL DEFAULT 0",
}


async def _add_columns(db: aiosqlite.Connection) -> None:
    """Columns added after the first release, for databases created before them."""
    cur = await db.execute("PRAGMA table_info(sessions)")
    present = {row[1] for row in await cur.fetchall()}
    for column, ddl in _ADDED_COLUMNS.items():
        if column not in present:
            await db.execute(ddl)


async def _scalar(db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    cur = await db.execute(sql, params)
    row = await cur.fetchone()
    if row is None:
        raise StoreUnavailable(f"sqlite store returned no row for: {sql}")
    return row[0]


def _meta(row: sqlite3.Row | None) -> SessionMeta | None:
    if row is None or row["last_active"] is None:
        return None
    return SessionMeta(
        created=row["created"], last_active=row["last_active"], platform=row["platform"], turns=row["turns"]
    )


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL (``:memory:`` allowed)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"expected sqlite:///<path>, got {url!r}")
    return url[len(prefix) :]


class SqliteStore:
    """Sessions in one SQLite file, through ``aiosqlite`` (a worker thread per connection)."""

    def __init__(self, path: str, *, limits: StoreLimits | None = None, codec: MessageCodec | None = None) -> None:
        self.limits = limits or StoreLimits()
        self._codec = codec or MessageCodec()
        # A turn may hold its session this long, so a longer wait for the file's lock means a stuck process.
        self._file = SqliteFile(
            path, schema=_SCHEMA, migrate=_add_columns, what="sqlite store", busy_wait=self.limits.lease_ttl
        )
        self._tx = self._file.transaction

    async def _drop(self, db: aiosqlite.Connection, session_id: str) -> None:
        for table in _CHILD_TABLES:
            await db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
        await db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    async def _row(self, db: aiosqlite.Connection, session_id: str, now: float) -> Any:
        """The session's row, dropping it first when it has expired."""
        cur = await db.execute(
            "SELECT last_active, lease_token, lease_event, lease_expires, summary, created, platform, turns, "
            "seq, summary_upto FROM sessions WHERE id = ?",
            (session_id,),
        )
        row = await cur.fetchone()
        if row is not None and row["last_active"] is not None and row["last_active"] + self.limits.idle_ttl <= now:
            await self._drop(db, session_id)
            return None
        return row

    async def begin_turn(
        self,
        key: SessionKey,
        *,
        event_id: str,
        window: int,
        recall_after: int | None = None,
        fence: int | None = None,
    ) -> TurnStart:
        now = time.time()
        sid = key.id
        async with self._tx() as db:
            tombstone = await self._tombstone(db, sid, now)
            if fence is not None and tombstone is not None and fence <= tombstone["fence"]:
                return TurnStart(ClaimStatus.ERASED)
            if tombstone is not None and tombstone["event_id"] == event_id:
                return TurnStart(ClaimStatus.DUPLICATE)
            row = await self._row(db, sid, now)
            cur = await db.execute("SELECT 1 FROM seen WHERE session_id = ? AND event_id = ?", (sid, event_id))
            if await cur.fetchone():
                return TurnStart(ClaimStatus.DUPLICATE)
            if row is not None and row["lease_token"] is not None and row["lease_expires"] > now:
                if row["lease_event"] == event_id:
                    return TurnStart(ClaimStatus.IN_PROGRESS)
                return TurnStart(ClaimStatus.BUSY, retry_after=row["lease_expires"] - now)
            token = await _scalar(db, "UPDATE fence SET token = token + 1 WHERE id = 1 RETURNING token")
            await db.execute(
                "INSERT INTO sessions (id, lease_token, lease_event, lease_expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET lease_token = excluded.lease_token, "
                "lease_event = excluded.lease_event, lease_expires = excluded.lease_expires",
                (sid, token, event_id, now + self.limits.lease_ttl),
            )
            cur = await db.execute(
                "SELECT body FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?", (sid, max(window, 0))
            )
            bodies = [r[0] for r in await cur.fetchall()]
            entities = await self._entities(db, sid)
            total = row["seq"] if row is not None else 0
            candidates = []
            if recall_after is not None and total:
                candidates = await self._recall_rows(db, sid, after=recall_after, before=total - len(bodies) + 1)
        context = SessionContext(
            recall=tuple(self._recall_item(r) for r in candidates),
            messages=tuple(self._codec.decode(b) for b in reversed(bodies)),
            summary=self._summary(row["summary"]) if row is not None else None,
            meta=_meta(row),
            total=row["seq"] if row is not None else 0,
            summary_upto=row["summary_upto"] if row is not None else 0,
            entities=entities,
            fence=token,
        )
        return TurnStart(ClaimStatus.ACQUIRED, Lease(key, token, event_id), context)

    async def commit_turn(
        self,
        lease: Lease,
        messages: tuple[StoredMessage, ...],
        *,
        platform: str,
        embedding: TurnEmbedding | None = None,
    ) -> None:
        now = time.time()
        sid = lease.key.id
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT lease_token, lease_event, lease_expires, seq, summary_upto FROM sessions WHERE id = ?",
                (sid,),
            )
            row = await cur.fetchone()
            if row is None or (row[0], row[1]) != (lease.token, lease.event_id) or row[2] <= now:
                raise LeaseLost(f"lease {lease.token} on session {sid} is no longer held")
            last = max(
                row["seq"], await _scalar(db, "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = ?", (sid,))
            )
            total = last + len(messages)
            await db.executemany(
                "INSERT INTO messages (session_id, seq, body) VALUES (?, ?, ?)",
                [(sid, last + i, self._codec.encode(m)) for i, m in enumerate(messages, start=1)],
            )
            await db.execute(
                "DELETE FROM messages WHERE session_id = ? AND seq <= ?",
                (sid, total - self.limits.keep(total, row["summary_upto"])),
            )
            if embedding is not None:
                await self._save_recall(db, sid, last + 1, embedding)
            await db.execute(
                "UPDATE sessions SET created = COALESCE(created, ?), last_active = ?, platform = ?, turns = turns + 1, "
                "seq = ?, lease_token = NULL, lease_event = NULL, lease_expires = NULL WHERE id = ?",
                (now, now, platform, total, sid),
            )
            await db.executemany(
                "INSERT OR IGNORE INTO session_users (session_id, user) VALUES (?, ?)",
                [(sid, m.user) for m in messages if m.role == "user" and m.user],
            )
            await db.execute(
                "INSERT OR REPLACE INTO seen (session_id, event_id, at) VALUES (?, ?, ?)", (sid, lease.event_id, now)
            )
            await db.execute("DELETE FROM seen WHERE session_id = ? AND at <= ?", (sid, now - self.limits.dedupe_ttl))

    async def renew_lease(self, lease: Lease) -> bool:
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE sessions SET lease_expires = ? "
                "WHERE id = ? AND lease_token = ? AND lease_event = ? AND lease_expires > ?",
                (now + self.limits.lease_ttl, lease.key.id, lease.token, lease.event_id, now),
            )
            return cur.rowcount == 1

    async def abort_turn(self, lease: Lease) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE sessions SET lease_token = NULL, lease_event = NULL, lease_expires = NULL "
                "WHERE id = ? AND lease_token = ? AND lease_event = ?",
                (lease.key.id, lease.token, lease.event_id),
            )
            # A session that never completed a turn leaves no trace, unless a tool call of it was logged.
            await db.execute(
                "DELETE FROM sessions WHERE id = ? AND last_active IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM audit WHERE session_id = sessions.id)",
                (lease.key.id,),
            )

    async def _tombstone(self, db: aiosqlite.Connection, session_id: str, now: float) -> sqlite3.Row | None:
        cur = await db.execute(
            "SELECT fence, event_id FROM erased WHERE session_id = ? AND expires > ?", (session_id, now)
        )
        row: sqlite3.Row | None = await cur.fetchone()
        return row

    async def _fenced(self, db: aiosqlite.Connection, session_id: str, fence: int, now: float) -> bool:
        """Whether a write made under the lease token ``fence`` comes from before the session's deletion."""
        tombstone = await self._tombstone(db, session_id, now)
        return tombstone is not None and fence <= tombstone["fence"]

    async def _entities(self, db: aiosqlite.Connection, session_id: str) -> dict[str, Entity]:
        cur = await db.execute("SELECT name, value, updated FROM entities WHERE session_id = ?", (session_id,))
        return {r[0]: Entity(self._codec.unseal_text(r[1]), r[2]) for r in await cur.fetchall()}

    async def save_entities(self, key: SessionKey, entities: Entities, *, fence: int = 0) -> None:
        now = time.time()
        async with self._tx() as db:
            if await self._row(db, key.id, now) is None or await self._fenced(db, key.id, fence, now):
                return
            await db.executemany(
                "INSERT INTO entities (session_id, name, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value, updated = excluded.updated "
                "WHERE excluded.updated >= entities.updated",
                [(key.id, name, self._codec.seal_text(e.value), e.updated) for name, e in entities.items()],
            )

    async def _save_recall(self, db: aiosqlite.Connection, sid: str, seq: int, embedding: TurnEmbedding) -> None:
        await db.execute(
            "INSERT OR REPLACE INTO recall (session_id, seq, model, vector, body) VALUES (?, ?, ?, ?, ?)",
            (
                sid,
                seq,
                embedding.model,
                self._codec.seal_vector(embedding.vector),
                self._codec.seal(json.dumps(embedding.text)),
            ),
        )
        await db.execute(
            "DELETE FROM recall WHERE session_id = ? AND seq NOT IN "
            "(SELECT seq FROM recall WHERE session_id = ? ORDER BY seq DESC LIMIT ?)",
            (sid, sid, self.limits.max_recall),
        )

    async def _recall_rows(
        self, db: aiosqlite.Connection, sid: str, *, after: int = 0, before: int = sys.maxsize
    ) -> list[sqlite3.Row]:
        cur = await db.execute(
            "SELECT seq, model, vector, body FROM recall WHERE session_id = ? AND seq > ? AND seq < ? ORDER BY seq",
            (sid, after, before),
        )
        return list(await cur.fetchall())

    def _recall_item(self, row: sqlite3.Row) -> RecallItem:
        return RecallItem(row[0], json.loads(self._codec.unseal(row[3])), self._codec.unseal_vector(row[2]), row[1])

    async def recall_items(self, key: SessionKey) -> list[RecallItem]:
        async with self._tx() as db:
            if await self._row(db, key.id, time.time()) is None:
                return []
            rows = await self._recall_rows(db, key.id)
        return [self._recall_item(r) for r in rows]

    async def append_audit(
        self, key: SessionKey, entry: AuditEntry, *, platform: str, user: str, fence: int = 0
    ) -> None:
        sid = key.id
        now = time.time()
        async with self._tx() as db:
            if await self._fenced(db, sid, fence, now):
                return
            await self._row(db, sid, now)
            await db.execute(
                "INSERT INTO sessions (id, platform) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET platform = excluded.platform WHERE sessions.platform = ''",
                (sid, platform),
            )
            if user:
                await db.execute("INSERT OR IGNORE INTO session_users (session_id, user) VALUES (?, ?)", (sid, user))
            await db.execute(
                "INSERT INTO audit (session_id, at, body) VALUES (?, ?, ?)",
                (sid, entry.time, self._codec.seal(entry.to_json())),
            )
            await db.execute(
                "DELETE FROM audit WHERE session_id = ? AND id NOT IN "
                "(SELECT id FROM audit WHERE session_id = ? ORDER BY id DESC LIMIT ?)",
                (sid, sid, self.limits.max_audit),
            )

    async def audit(self, key: SessionKey) -> list[AuditEntry]:
        async with self._tx() as db:
            if await self._row(db, key.id, time.time()) is None:
                return []
            cur = await db.execute("SELECT body FROM audit WHERE session_id = ? ORDER BY id", (key.id,))
            rows = await cur.fetchall()
        return [AuditEntry.from_json(self._codec.unseal(r[0])) for r in rows]

    async def unsummarized(self, key: SessionKey, *, upto: int) -> SummaryWork:
        sid = key.id
        async with self._tx() as db:
            row = await self._row(db, sid, time.time())
            if row is None:
                return SummaryWork(None, 0, ())
            cur = await db.execute(
                "SELECT body FROM messages WHERE session_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
                (sid, row["summary_upto"], upto),
            )
            bodies = [r[0] for r in await cur.fetchall()]
        return SummaryWork(
            self._summary(row["summary"]), row["summary_upto"], tuple(self._codec.decode(b) for b in bodies)
        )

    def _summary(self, raw: str | None) -> str | None:
        return None if raw is None else self._codec.unseal_text(raw)

    async def save_summary(self, key: SessionKey, *, summary: str, after: int, upto: int, fence: int = 0) -> bool:
        now = time.time()
        async with self._tx() as db:
            if await self._fenced(db, key.id, fence, now):
                return False
            cur = await db.execute(
                "UPDATE sessions SET summary = ?, summary_upto = ? "
                "WHERE id = ? AND summary_upto = ? AND last_active IS NOT NULL",
                (self._codec.seal_text(summary), upto, key.id, after),
            )
            return cur.rowcount == 1

    async def get(self, key: SessionKey) -> SessionRecord | None:
        sid = key.id
        async with self._tx() as db:
            row = await self._row(db, sid, time.time())
            meta = _meta(row)
            if meta is None:
                return None
            cur = await db.execute("SELECT body FROM messages WHERE session_id = ? ORDER BY seq", (sid,))
            bodies = [r[0] for r in await cur.fetchall()]
            cur = await db.execute("SELECT user FROM session_users WHERE session_id = ? ORDER BY user", (sid,))
            users = tuple(r[0] for r in await cur.fetchall())
            entities = await self._entities(db, sid)
        return SessionRecord(
            session_id=sid,
            meta=meta,
            users=users,
            messages=tuple(self._codec.decode(b) for b in bodies),
            summary=self._summary(row["summary"]),
            entities=entities,
        )

    async def list_sessions(self) -> list[SessionRecord]:
        await self.sweep()
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT s.id, s.created, s.last_active, s.platform, s.turns, NULL, "
                "(SELECT group_concat(user, char(0)) FROM session_users u WHERE u.session_id = s.id) "
                "FROM sessions s WHERE s.last_active IS NOT NULL ORDER BY s.last_active DESC"
            )
            rows = await cur.fetchall()
        return [
            SessionRecord(
                session_id=r[0],
                meta=SessionMeta(created=r[1], last_active=r[2], platform=r[3], turns=r[4]),
                users=tuple(sorted(r[6].split("\0"))) if r[6] else (),
                messages=(),
                summary=None,  # as on Redis: a listing needs no key, and reads no text
            )
            for r in rows
        ]

    async def sessions_of_user(self, platform: str, user: str) -> list[str]:
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT u.session_id FROM session_users u JOIN sessions s ON s.id = u.session_id "
                "WHERE s.platform = ? AND u.user = ? ORDER BY u.session_id",
                (platform, user),
            )
            return [r[0] for r in await cur.fetchall()]

    async def forget_user(self, platform: str, user: str) -> None:
        # session_users is the index, and went with each session. What is left is to make sure the log holds no
        # copy of what was deleted, also when an earlier erasure of this user could not truncate it.
        await self._truncate_log()

    async def delete(self, key: SessionKey) -> bool:
        sid = key.id
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute("SELECT last_active, lease_event FROM sessions WHERE id = ?", (sid,))
            row = await cur.fetchone()
            tombstone = await self._tombstone(db, sid, now)
            answering = row["lease_event"] if row is not None else None
            if answering is None and tombstone is not None:
                answering = tombstone["event_id"]
            await self._drop(db, sid)
            await db.execute(
                "INSERT OR REPLACE INTO erased (session_id, fence, event_id, expires) "
                "VALUES (?, (SELECT token FROM fence WHERE id = 1), ?, ?)",
                (sid, answering, now + self.limits.dedupe_ttl),
            )
        await self._truncate_log()
        return row is not None and row["last_active"] is not None

    async def _truncate_log(self) -> None:
        """Move the write-ahead log into the database file and cut it to zero bytes.

        Until then the log keeps the pages as they were before a deletion, with the deleted text in them; the
        database file gets the pages as secure_delete left them, zeroed where the rows were.

        Raises:
            StoreUnavailable: another connection kept the log in use past the busy timeout.
        """
        async with self._file.connection() as db:
            try:
                busy = await _scalar(db, "PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite store failed: {exc}") from exc
        if busy:
            raise StoreUnavailable(
                "the session was deleted, but another connection kept the write-ahead log busy, so copies of it "
                "may remain there until the next checkpoint; run the deletion again"
            )

    async def sweep(self) -> int:
        now = time.time()
        async with self._tx() as db:
            cur = await db.execute(
                "SELECT id FROM sessions WHERE (last_active IS NOT NULL AND last_active <= ?) "
                "OR (last_active IS NULL AND (lease_expires IS NULL OR lease_expires <= ?) "
                "AND COALESCE((SELECT MAX(at) FROM audit WHERE audit.session_id = sessions.id), 0) <= ?)",
                (now - self.limits.idle_ttl, now, now - self.limits.idle_ttl),
            )
            expired = [r[0] for r in await cur.fetchall()]
            for sid in expired:
                await self._drop(db, sid)
            await db.execute("DELETE FROM erased WHERE expires <= ?", (now,))
        return len(expired)

    async def ping(self) -> None:
        async with self._tx() as db:
            await db.execute("SELECT 1")

    async def aclose(self) -> None:
        await self._file.aclose()
