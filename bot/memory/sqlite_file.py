"""One SQLite file as the store and the inbox use it: opened once per object, WAL, secure deletes, and a wait for
another process's lock instead of a refusal."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiosqlite

from bot.errors import StoreUnavailable

T = TypeVar("T")

# Back-off between attempts when SQLite reports a lock it would not wait for.
_BUSY_RETRY_MIN_S = 0.002  # 2 ms
_BUSY_RETRY_MAX_S = 0.1  # 100 ms

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused because another connection holds a lock (``SQLITE_BUSY`` and its extended codes)."""
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


class SqliteFile:
    """A connection to one SQLite file, shared by every coroutine of its owner; transactions never interleave."""

    def __init__(self, path: str, *, schema: str, what: str, busy_wait: float, migrate: Migration | None = None):
        """Nothing is opened before the first transaction.

        Args:
            path: the file (``:memory:`` for a private in-memory database).
            schema: ``CREATE … IF NOT EXISTS`` statements, run in one immediate transaction when the file is opened.
            what: how errors name this file's user ("sqlite store", "sqlite inbox").
            busy_wait: how long to wait for another connection's write lock before the store counts as unavailable.
            migrate: run after the schema, in the same transaction (columns added after a first release).
        """
        self.path = path
        self._schema = schema
        self._what = what
        self._busy_wait = busy_wait
        self._migrate = migrate
        self._db: aiosqlite.Connection | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    async def _conn(self) -> aiosqlite.Connection:
        if self._closed:
            raise StoreUnavailable(f"the {self._what} is closed")
        if self._db is None:
            try:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                # The busy timeout makes SQLite itself wait for another connection's write lock.
                db = await aiosqlite.connect(self.path, timeout=self._busy_wait, isolation_level=None)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open {self._what} at {self.path}: {exc}") from exc
            try:
                db.row_factory = sqlite3.Row
                await self.when_free(lambda: db.execute("PRAGMA journal_mode=WAL"))
                await db.execute("PRAGMA synchronous=NORMAL")
                # Deleted rows are overwritten with zeros, not just unlinked: an erased conversation must not
                # linger in free pages (the store truncates the write-ahead log after each deletion).
                await db.execute("PRAGMA secure_delete=ON")
                await self.when_free(lambda: self._create_schema(db))
            except (sqlite3.Error, OSError) as exc:
                await db.close()  # its worker thread would otherwise keep the process alive
                raise StoreUnavailable(f"cannot open {self._what} at {self.path}: {exc}") from exc
            self._db = db
        return self._db

    async def _create_schema(self, db: aiosqlite.Connection) -> None:
        """The tables, in one immediate transaction, so a second process opening the file meanwhile waits for it."""
        await db.execute("BEGIN IMMEDIATE")
        try:
            statement = ""
            for line in self._schema.splitlines(keepends=True):
                statement += line
                if sqlite3.complete_statement(statement):
                    await db.execute(statement)
                    statement = ""
            if self._migrate is not None:
                await self._migrate(db)
            await db.execute("COMMIT")
        finally:
            if db.in_transaction:
                await db.execute("ROLLBACK")

    async def when_free(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again after a short back-off while SQLite answers "database is locked" without waiting.

        SQLite's busy timeout does not cover every case: where waiting could deadlock (two connections that both
        read and then want to write, as when two processes switch a new file to WAL or create its tables at the
        same moment) it fails at once, and expects the caller to start over.
        """
        deadline = time.monotonic() + self._busy_wait
        delay = _BUSY_RETRY_MIN_S
        while True:
            try:
                return await attempt()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _BUSY_RETRY_MAX_S)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """An immediate transaction on the shared connection, committed when the block ends, rolled back on error.

        Raises:
            StoreUnavailable: the file cannot be opened or SQLite failed.
        """
        async with self._lock:
            db = await self._conn()
            try:
                await self.when_free(lambda: db.execute("BEGIN IMMEDIATE"))
                try:
                    yield db
                    await db.execute("COMMIT")
                finally:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"{self._what} failed: {exc}") from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """The shared connection outside a transaction (for a pragma such as a checkpoint), held exclusively."""
        async with self._lock:
            yield await self._conn()

    async def aclose(self) -> None:
        """Close the connection. Idempotent."""
        self._closed = True
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()
