"""The worker loop: an attempt longer than the visibility timeout keeps its entry, a finished one removes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.inbox.sqlite import SqliteInbox
from bot.inbox.worker import Attempt, InboxWorker
from bot.messages import IncomingMessage

VISIBILITY_S = 0.6


async def test_a_long_attempt_keeps_its_entry_through_several_visibility_timeouts(tmp_path: Path) -> None:
    path = str(tmp_path / "inbox.db")
    mine = SqliteInbox(path, consumer="worker-a", visibility=VISIBILITY_S)
    other = SqliteInbox(path, consumer="worker-b", visibility=VISIBILITY_S)
    started, finish = asyncio.Event(), asyncio.Event()
    answered: list[str] = []

    async def slow(attempt: Attempt) -> None:
        started.set()
        await finish.wait()
        answered.append(attempt.delivery.message.event_id)

    worker = InboxWorker(inbox=mine, visibility=VISIBILITY_S)
    worker.register("slack", slow)
    worker.start()
    try:
        msg = IncomingMessage("slack", "T1", "C1", "1.1", "U1", "printer jammed", "C1:1.1")
        await mine.put(msg, route={}, session_id="s1")
        await started.wait()
        # Five visibility timeouts go by, each a chance for another worker to take the entry over.
        for _ in range(5):
            assert await other.take(limit=5, wait=VISIBILITY_S) == []
        finish.set()
        while (await mine.stats()).depth:
            await asyncio.sleep(0.02)
        assert answered == ["C1:1.1"]
        assert other.counters.claimed_from_dead == 0
    finally:
        finish.set()
        await worker.stop(grace=5)
        await mine.aclose()
        await other.aclose()
