"""SQLite shared by several connections and processes: a turn waits for the file's lock, it is never refused.

SQLite's busy timeout does not cover every lock: two connections switching a new file to WAL at the same moment
get "database is locked" at once. These tests open new files from several connections and processes at the same
moment, many times over.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import StoreUnavailable
from bot.memory import StoreLimits
from bot.memory.sqlite import SqliteStore
from bot.messages import StoredMessage
from bot.session import SessionKey

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 40
CONNECTIONS = 4


def key(name: str) -> SessionKey:
    return SessionKey("cli", None, name, None, "u")


async def one_turn(store: SqliteStore, session: SessionKey, event_id: str) -> None:
    while True:
        start = await store.begin_turn(session, event_id=event_id, window=10)
        if start.lease is not None:
            break
        await asyncio.sleep(0.001)  # another connection holds the session's lease: the core backs off the same way
    await store.commit_turn(start.lease, (StoredMessage("user", event_id, 1.0, user="u"),), platform="cli")


async def test_connections_opening_a_new_file_at_once_all_get_their_turns(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"round-{round_}.db")
        stores = [SqliteStore(path) for _ in range(CONNECTIONS)]

        async def work(index: int, store: SqliteStore) -> None:
            for n in range(3):
                await one_turn(store, key("shared"), f"{index}-{n}")
                await one_turn(store, key(f"own-{index}"), f"{index}-{n}")

        try:
            await asyncio.gather(*(work(i, s) for i, s in enumerate(stores)))
            record = await stores[0].get(key("shared"))
            assert record is not None and record.meta.turns == 3 * CONNECTIONS
        finally:
            for store in stores:
                await store.aclose()


async def test_a_turn_waits_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    store = SqliteStore(str(path))
    await one_turn(store, key("a"), "first")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    turn = asyncio.create_task(one_turn(store, key("a"), "second"))
    await asyncio.sleep(0.3)
    assert not turn.done(), "the turn waits for the lock rather than failing"
    other.execute("COMMIT")
    other.close()
    await turn
    record = await store.get(key("a"))
    assert record is not None and record.meta.turns == 2
    await store.aclose()


async def test_the_wait_for_the_lock_ends_with_the_lease(tmp_path: Path) -> None:
    path = tmp_path / "stuck.db"
    store = SqliteStore(str(path), limits=StoreLimits(lease_ttl=0.2))
    await one_turn(store, key("a"), "first")
    stuck = sqlite3.connect(path, isolation_level=None)
    stuck.execute("BEGIN IMMEDIATE")  # a process that never lets go
    with pytest.raises(StoreUnavailable, match="database is locked"):
        await one_turn(store, key("a"), "second")
    stuck.execute("ROLLBACK")
    stuck.close()
    await one_turn(store, key("a"), "third")  # and the store works again once the lock is free
    await store.aclose()


def test_two_processes_starting_on_a_new_file_answer_every_turn(tmp_path: Path) -> None:
    turns = 20
    for round_ in range(2):
        path = tmp_path / f"processes-{round_}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.sqlite_contender", str(path), name, str(turns)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("one", "two")
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # both open the new file now
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate() for proc in procs]
        for proc, (out, err) in zip(procs, results, strict=True):
            assert proc.returncode == 0, err
            assert out.split() == ["answer"] * turns, err
        check = sqlite3.connect(path)
        [(messages,)] = check.execute("SELECT COUNT(*) FROM messages").fetchall()
        check.close()
        assert messages == 2 * 2 * turns, "every turn of both processes is stored, question and answer"
