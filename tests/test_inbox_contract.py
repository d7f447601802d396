"""One contract over every inbox backend: recorded before acknowledged, handed out in session order, taken over
from a dead worker, recovered at once by the same worker restarted, removed only when done."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.inbox import Inbox, open_inbox
from bot.inbox.memory import MemoryInbox
from bot.memory.codec import EncryptedCodec
from bot.messages import IncomingMessage

InboxFactory = Callable[..., Inbox]
KEY = "Jz4W0bT2oXbq3TqY3x9mN1c2Q0fHk6pM8yU7rS5vA1E="


@pytest.fixture
async def inbox_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[InboxFactory]:
    """Inboxes of the parametrised backend on one shared place (two of them are two processes' worth of workers).

    Memory inboxes live in one process only, so a "second worker" on memory is the same inbox object.
    """
    url = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp_path / 'inbox.db'}",
        "redis": request.getfixturevalue("redis_url") if backend == "redis" else "",
        "cluster": request.getfixturevalue("cluster_url") if backend == "cluster" else "",
    }[backend]
    made: list[Inbox] = []
    shared: list[MemoryInbox] = []
    # A reader cancelled at the end of an earlier test may still be blocked on the server for an instant, and would
    # swallow an entry under its consumer name: names differ from test to test, as processes' names do.
    prefix = uuid.uuid4().hex[:8]

    def factory(consumer: str = "w1", visibility: float = 30.0, codec: EncryptedCodec | None = None) -> Inbox:
        if backend == "memory" and shared:
            shared[0].consumer = f"{prefix}-{consumer}"
            return shared[0]
        inbox = open_inbox(
            url, consumer=f"{prefix}-{consumer}", codec=codec, visibility=visibility, dedupe_ttl=3600, shards=4
        )
        made.append(inbox)
        if isinstance(inbox, MemoryInbox):
            shared.append(inbox)
        return inbox

    yield factory
    for inbox in made:
        await inbox.aclose()


def message(n: int, *, session: str = "s1", text: str | None = None) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread=session,
        user="U1",
        text=text or f"message {n}",
        event_id=f"C1:{n}",
        timestamp=1_700_000_000.0 + n,
    )


async def test_a_recorded_message_comes_back_whole_and_goes_when_done(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory()
    route = {"kind": "mention", "bot_user_id": "UBOT"}
    assert await inbox.put(message(1, text="héllo ✓"), route=route, session_id="s1")
    assert (await inbox.stats()).depth == 1
    [delivery] = await inbox.take(limit=10, wait=5)
    assert delivery.message == message(1, text="héllo ✓")
    assert dict(delivery.route) == route
    assert delivery.session_id == "s1"
    assert delivery.attempts == 1 and not delivery.redelivered
    await inbox.done(delivery)
    assert (await inbox.stats()).depth == 0
    assert await inbox.take(limit=10, wait=0.05) == []


async def test_a_platform_retry_makes_no_second_entry(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory()
    assert await inbox.put(message(1), route={}, session_id="s1")
    assert not await inbox.put(message(1), route={}, session_id="s1")
    assert (await inbox.stats()).depth == 1
    assert inbox.counters.already_recorded == 1


async def test_a_session_is_answered_in_arrival_order_one_at_a_time(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory()
    for n in (1, 2, 3):
        await inbox.put(message(n, session="s1"), route={}, session_id="s1")
    await inbox.put(message(9, session="s2"), route={}, session_id="s2")
    first = await inbox.take(limit=10, wait=5)
    while len(first) < 2:  # shards are read side by side: the second session's entry may come a take later
        more = await inbox.take(limit=10, wait=5)
        assert more, "the second session's entry never came"
        first += more
    assert sorted(d.message.event_id for d in first) == ["C1:1", "C1:9"]
    # While the head of s1 is held, nothing else of s1 is handed out, to this worker or another one.
    assert await inbox.take(limit=10, wait=0.3) == []
    other = inbox_factory("w2")
    assert await other.take(limit=10, wait=0.3) == []
    for delivery in first:
        await inbox.done(delivery)
    seen = []
    while len(seen) < 2:  # on Redis the first worker read them into its own pending list, and answers them
        taken = [(w, d) for w in (inbox, other) for d in await w.take(limit=10, wait=0.2)]
        assert len(taken) <= 1, "two entries of one session handed out at once"
        for worker, delivery in taken:
            seen.append(delivery.message.event_id)
            await worker.done(delivery)
    assert seen == ["C1:2", "C1:3"]


async def test_a_dead_workers_entry_is_taken_over_after_the_visibility_timeout(
    backend: str, inbox_factory: InboxFactory
) -> None:
    dead = inbox_factory("dead", visibility=0.5)
    await dead.put(message(1), route={}, session_id="s1")
    [taken] = await dead.take(limit=10, wait=5)
    await dead.note_reply(taken, "C1/1700.0002")
    if backend != "memory":
        await dead.aclose()  # killed: its heartbeat stops, nothing is given back
    live = inbox_factory("live", visibility=0.5)
    [again] = await live.take(limit=10, wait=10)
    assert again.entry_id == taken.entry_id
    assert again.redelivered and again.attempts == 2
    assert again.reply_ref == "C1/1700.0002"
    assert live.counters.claimed_from_dead == 1
    assert await live.extend([again]) == {again.entry_id}


async def test_a_heartbeat_keeps_an_entry_from_being_taken_over(inbox_factory: InboxFactory) -> None:
    first = inbox_factory("w1", visibility=0.6)
    await first.put(message(1), route={}, session_id="s1")
    [taken] = await first.take(limit=10, wait=5)
    second = inbox_factory("w2", visibility=0.6)
    for _ in range(6):
        assert await first.extend([taken]) == {taken.entry_id} or first is second
        if first is not second:
            assert await second.take(limit=10, wait=0.2) == []


async def test_an_entry_given_back_is_taken_at_once(inbox_factory: InboxFactory) -> None:
    first = inbox_factory("w1", visibility=60)
    await first.put(message(1), route={}, session_id="s1")
    [taken] = await first.take(limit=10, wait=5)
    await first.release([taken])
    [again] = await inbox_factory("w2", visibility=60).take(limit=10, wait=10)
    assert again.entry_id == taken.entry_id and again.attempts == 2


async def test_a_restarted_worker_answers_what_it_held_without_waiting(
    backend: str, inbox_factory: InboxFactory
) -> None:
    if backend == "memory":
        pytest.skip("a memory inbox does not outlive its process")
    before = inbox_factory("host-a:8080", visibility=600)
    await before.put(message(1), route={}, session_id="s1")
    [taken] = await before.take(limit=10, wait=5)
    await before.aclose()  # killed: nothing given back
    after = inbox_factory("host-a:8080", visibility=600)
    [again] = await after.take(limit=10, wait=10)
    assert again.entry_id == taken.entry_id and again.redelivered


async def test_an_abandoned_entry_leaves_the_inbox(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory()
    await inbox.put(message(1), route={}, session_id="s1")
    await inbox.put(message(2), route={}, session_id="s1")
    [taken] = await inbox.take(limit=10, wait=5)
    await inbox.abandon(taken, reason="test")
    [next_one] = await inbox.take(limit=10, wait=5)
    assert next_one.message.event_id == "C1:2"
    assert inbox.counters.abandoned == 1


async def test_pending_lists_what_waits_and_who_holds_it(inbox_factory: InboxFactory) -> None:
    inbox = inbox_factory("w1")
    await inbox.put(message(1), route={}, session_id="s1")
    await inbox.put(message(2, session="s2"), route={}, session_id="s2")
    taken = await inbox.take(limit=1, wait=5)
    rows = await inbox.pending()
    assert [r.event_id for r in rows] == ["C1:1", "C1:2"]
    held = {r.event_id: r.owner for r in rows}
    assert held[taken[0].message.event_id] == inbox.consumer
    stats = await inbox.stats()
    assert stats.depth == 2 and stats.oldest_age >= 0


async def test_entries_are_encrypted_at_rest(backend: str, inbox_factory: InboxFactory, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite file is scanned here; Redis values are sealed by the same codec")
    inbox = inbox_factory(codec=EncryptedCodec([KEY]))
    await inbox.put(message(1, text="my home is 12 Quietlane Road"), route={}, session_id="s1")
    [delivery] = await inbox.take(limit=1, wait=5)
    assert delivery.message.text == "my home is 12 Quietlane Road"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("inbox.db*"))
    assert b"Quietlane" not in raw


async def test_an_unreadable_entry_is_set_aside_not_retried_forever(backend: str, inbox_factory: InboxFactory) -> None:
    if backend == "memory":
        pytest.skip("a memory inbox keeps messages as objects: nothing to misread")
    sealed = inbox_factory("writer", codec=EncryptedCodec([KEY]))
    await sealed.put(message(1), route={}, session_id="s1")
    await sealed.put(message(2, session="s2"), route={}, session_id="s2")
    if backend != "sqlite":
        await sealed.aclose()
    reader = inbox_factory("reader")  # no encryption key: neither entry can be read
    for _ in range(600):  # shards are read side by side: wait for both, not for a time
        assert await reader.take(limit=10, wait=0.1) == []
        if reader.counters.abandoned == 2:
            break
    assert reader.counters.abandoned == 2
    assert (await reader.stats()).depth == 0
    assert await inbox_factory("writer", codec=EncryptedCodec([KEY])).take(limit=10, wait=0.2) == []
