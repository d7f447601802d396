"""One contract, every backend: memory, sqlite and a private redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from pathlib import Path

import pytest

from bot.errors import LeaseLost
from bot.memory import AuditEntry, ClaimStatus, Lease, RecallItem, SessionStore, StoreLimits, TurnEmbedding
from bot.memory.redis import RedisStore
from bot.messages import StoredMessage
from bot.session import SessionKey
from tests.conftest import StoreFactory, second_client

KEY = SessionKey("slack", "T1", "C1", "1700000000.000100", "U1")
OTHER = SessionKey("slack", "T1", "C1", "1700000000.000100", "U2")


def pair(n: int, *, event: str | None = None) -> tuple[StoredMessage, StoredMessage]:
    return (
        StoredMessage("user", f"question {n}", float(n), user="U1", event_id=event or f"e{n}"),
        StoredMessage("assistant", f"answer {n}", float(n) + 0.5),
    )


async def turn(
    store: SessionStore, key: SessionKey, n: int, *, window: int = 50, embedding: TurnEmbedding | None = None
) -> None:
    start = await store.begin_turn(key, event_id=f"e{n}", window=window)
    assert start.status is ClaimStatus.ACQUIRED and start.lease is not None
    await store.commit_turn(start.lease, pair(n), platform=key.platform, embedding=embedding)


async def test_new_session_starts_empty(store_factory: StoreFactory) -> None:
    store = store_factory()
    start = await store.begin_turn(KEY, event_id="e1", window=10)
    assert start.status is ClaimStatus.ACQUIRED
    assert start.context is not None
    assert start.context.messages == () and start.context.summary is None and start.context.meta is None


async def test_committed_turns_come_back_in_order_within_the_window(store_factory: StoreFactory) -> None:
    store = store_factory()
    for n in range(1, 6):
        await turn(store, KEY, n)
    start = await store.begin_turn(KEY, event_id="e6", window=4)
    assert start.context is not None
    assert [m.content for m in start.context.messages] == ["question 4", "answer 4", "question 5", "answer 5"]
    assert start.context.meta is not None and start.context.meta.turns == 5
    assert start.context.meta.platform == "slack"


async def test_sessions_never_see_each_other(store_factory: StoreFactory) -> None:
    store = store_factory()
    await turn(store, KEY, 1)
    start = await store.begin_turn(OTHER, event_id="e1", window=10)
    assert start.status is ClaimStatus.ACQUIRED, "the same event id in another session is a different delivery"
    assert start.context is not None and start.context.messages == ()


async def test_answered_delivery_is_a_duplicate(store_factory: StoreFactory) -> None:
    store = store_factory()
    await turn(store, KEY, 1)
    assert (await store.begin_turn(KEY, event_id="e1", window=10)).status is ClaimStatus.DUPLICATE


async def test_delivery_in_progress_is_not_claimed_twice(store_factory: StoreFactory) -> None:
    store = store_factory()
    first = await store.begin_turn(KEY, event_id="e1", window=10)
    assert first.status is ClaimStatus.ACQUIRED
    assert (await store.begin_turn(KEY, event_id="e1", window=10)).status is ClaimStatus.IN_PROGRESS
    other = await store.begin_turn(KEY, event_id="e2", window=10)
    assert other.status is ClaimStatus.BUSY and other.retry_after > 0


async def test_aborted_turn_lets_a_redelivery_through_and_stores_nothing(store_factory: StoreFactory) -> None:
    store = store_factory()
    first = await store.begin_turn(KEY, event_id="e1", window=10)
    assert first.lease is not None
    await store.abort_turn(first.lease)
    again = await store.begin_turn(KEY, event_id="e1", window=10)
    assert again.status is ClaimStatus.ACQUIRED
    assert await store.get(KEY) is None


async def test_expired_lease_is_fenced_out(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(lease_ttl=0.2))
    stale = await store.begin_turn(KEY, event_id="e1", window=10)
    assert stale.lease is not None
    await asyncio.sleep(0.3)
    # The fresh holder gets a long lease, so however slow the machine it still holds it when it saves.
    store.limits = dataclasses.replace(store.limits, lease_ttl=600)
    fresh = await store.begin_turn(KEY, event_id="e2", window=10)
    assert fresh.status is ClaimStatus.ACQUIRED and fresh.lease is not None
    assert fresh.lease.token > stale.lease.token
    with pytest.raises(LeaseLost):
        await store.commit_turn(stale.lease, pair(1), platform="slack")
    await store.commit_turn(fresh.lease, pair(2), platform="slack")
    record = await store.get(KEY)
    assert record is not None
    assert [m.content for m in record.messages] == ["question 2", "answer 2"]


async def test_a_forged_lease_cannot_write(store_factory: StoreFactory) -> None:
    store = store_factory()
    real = await store.begin_turn(KEY, event_id="e1", window=10)
    assert real.lease is not None
    with pytest.raises(LeaseLost):
        await store.commit_turn(Lease(KEY, real.lease.token + 1, "e1"), pair(1), platform="slack")
    with pytest.raises(LeaseLost):
        await store.commit_turn(Lease(KEY, real.lease.token, "other"), pair(1), platform="slack")


async def test_history_is_trimmed_to_max_messages(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(max_messages=6))
    for n in range(1, 11):
        await turn(store, KEY, n)
    record = await store.get(KEY)
    assert record is not None
    assert [m.content for m in record.messages] == [
        "question 8", "answer 8", "question 9", "answer 9", "question 10", "answer 10",
    ]  # fmt: skip
    assert record.meta.turns == 10


async def test_record_has_metadata_and_users(store_factory: StoreFactory) -> None:
    store = store_factory()
    before = time.time()
    await turn(store, KEY, 1)
    start = await store.begin_turn(KEY, event_id="e2", window=10)
    assert start.lease is not None
    message = StoredMessage("user", "me too", 2.0, user="U9", event_id="e2")
    await store.commit_turn(start.lease, (message,), platform="slack")
    record = await store.get(KEY)
    assert record is not None
    assert record.session_id == KEY.id
    assert record.users == ("U1", "U9")
    assert before - 1 <= record.meta.created <= record.meta.last_active <= time.time() + 1
    assert [s.session_id for s in await store.list_sessions()] == [KEY.id]


async def test_list_is_most_recent_first(store_factory: StoreFactory) -> None:
    store = store_factory()
    await turn(store, KEY, 1)
    await asyncio.sleep(0.01)
    await turn(store, OTHER, 1)
    assert [s.session_id for s in await store.list_sessions()] == [OTHER.id, KEY.id]


async def test_delete_forgets_the_session_and_its_deliveries(store_factory: StoreFactory) -> None:
    store = store_factory()
    await turn(store, KEY, 1)
    await turn(store, OTHER, 1)
    assert await store.delete(KEY) is True
    assert await store.get(KEY) is None
    assert await store.delete(KEY) is False
    assert (await store.begin_turn(KEY, event_id="e1", window=10)).status is ClaimStatus.ACQUIRED
    assert await store.get(OTHER) is not None


async def test_idle_sessions_expire_and_activity_keeps_them(store_factory: StoreFactory) -> None:
    # A turn every 0.4 s keeps KEY alive; the idle time leaves a second for a slow store call between them.
    store = store_factory(StoreLimits(idle_ttl=1.5))
    await turn(store, OTHER, 1)
    await turn(store, KEY, 1)
    for n in range(2, 6):
        await asyncio.sleep(0.4)
        await turn(store, KEY, n)  # keeps KEY alive past OTHER's deadline
    await store.sweep()
    assert await store.get(OTHER) is None
    record = await store.get(KEY)
    assert record is not None and record.meta.turns == 5
    assert [s.session_id for s in await store.list_sessions()] == [KEY.id]
    fresh = await store.begin_turn(OTHER, event_id="e1", window=10)
    assert fresh.status is ClaimStatus.ACQUIRED, "an expired session's deliveries are forgotten with it"
    assert fresh.context is not None and fresh.context.messages == ()


async def test_dedupe_memory_is_bounded_in_time(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(dedupe_ttl=0.2))
    await turn(store, KEY, 1)
    await asyncio.sleep(0.3)
    await turn(store, KEY, 2)  # the save of a later turn drops delivery ids older than dedupe_ttl
    assert (await store.begin_turn(KEY, event_id="e1", window=10)).status is ClaimStatus.ACQUIRED


@pytest.mark.parametrize(
    "text",
    ["", "a\x00b", "emoji 🧑‍💻 and 漢字", "\ufffd", 'quote " and \\ backslash', "x" * 100_000, "line\nbreaks\r\n"],
)
async def test_message_text_round_trips(store_factory: StoreFactory, text: str) -> None:
    store = store_factory()
    start = await store.begin_turn(KEY, event_id="e1", window=10)
    assert start.lease is not None
    await store.commit_turn(start.lease, (StoredMessage("user", text, 1.0, user="U1"),), platform="slack")
    record = await store.get(KEY)
    assert record is not None and record.messages[0].content == text


async def test_two_clients_share_leases(backend: str, store_factory: StoreFactory) -> None:
    one = store_factory()
    two = second_client(backend, store_factory, one)
    held = await one.begin_turn(KEY, event_id="e1", window=10)
    assert held.lease is not None
    assert (await two.begin_turn(KEY, event_id="e2", window=10)).status is ClaimStatus.BUSY
    await one.commit_turn(held.lease, pair(1), platform="slack")
    after = await two.begin_turn(KEY, event_id="e2", window=10)
    assert after.status is ClaimStatus.ACQUIRED and after.context is not None
    assert [m.content for m in after.context.messages] == ["question 1", "answer 1"]


async def test_ping_and_idempotent_close(store_factory: StoreFactory) -> None:
    store = store_factory()
    await store.ping()
    await store.aclose()
    await store.aclose()


async def test_the_summary_cut_point_moves_once_and_keeps_what_is_not_summarised(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(max_messages=4, max_unsummarized=50))
    for n in range(1, 6):
        await turn(store, KEY, n)
    start = await store.begin_turn(KEY, event_id="e-peek", window=2)
    assert start.context is not None and (start.context.total, start.context.summary_upto) == (10, 0)
    assert start.lease is not None
    await store.abort_turn(start.lease)
    record = await store.get(KEY)
    assert record is not None and len(record.messages) == 10, "nothing is trimmed before it is summarised"

    work = await store.unsummarized(KEY, upto=6)
    assert work.summary is None and work.summary_upto == 0
    assert [m.content for m in work.messages] == [
        "question 1", "answer 1", "question 2", "answer 2", "question 3", "answer 3",
    ]  # fmt: skip
    assert await store.save_summary(KEY, summary="asked 1-3", after=0, upto=6) is True
    assert await store.save_summary(KEY, summary="a late twin", after=0, upto=6) is False, "the fold is idempotent"

    await turn(store, KEY, 6)
    start = await store.begin_turn(KEY, event_id="e-next", window=2)
    assert start.context is not None
    assert (start.context.summary, start.context.summary_upto, start.context.total) == ("asked 1-3", 6, 12)
    assert start.lease is not None
    await store.abort_turn(start.lease)
    record = await store.get(KEY)
    assert record is not None and record.summary == "asked 1-3"
    assert [m.content for m in record.messages] == [
        "question 4", "answer 4", "question 5", "answer 5", "question 6", "answer 6",
    ], "trimming stops at the summary's cut point"  # fmt: skip
    work = await store.unsummarized(KEY, upto=12)
    assert work.summary_upto == 6 and [m.content for m in work.messages][0] == "question 4"


async def test_without_a_summary_the_history_is_trimmed_as_before(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(max_messages=4))
    for n in range(1, 6):
        await turn(store, KEY, n)
    record = await store.get(KEY)
    assert record is not None and len(record.messages) == 4
    assert (await store.unsummarized(OTHER, upto=10)).messages == ()
    assert await store.save_summary(OTHER, summary="x", after=0, upto=2) is False, "no session, nothing written"


async def test_a_users_sessions_are_indexed_exported_and_erased(backend: str, store_factory: StoreFactory) -> None:
    from bot.privacy import erase_user, export_user

    store = store_factory()
    alice_dm = SessionKey("slack", "T1", "D1", None, "UALICE")
    alice_thread = SessionKey("slack", "T1", "C1", "1.1", None)  # shared with bob (thread scope)
    bob_dm = SessionKey("slack", "T1", "D2", None, "UBOB")
    for key, user, event in ((alice_dm, "UALICE", "a1"), (alice_thread, "UALICE", "a2"), (alice_thread, "UBOB", "b1"),
                             (bob_dm, "UBOB", "b2")):  # fmt: skip
        start = await store.begin_turn(key, event_id=event, window=10)
        assert start.lease is not None
        await store.commit_turn(
            start.lease,
            (StoredMessage("user", f"{user} says hi", 1.0, user=user),),
            platform="slack",
            embedding=TurnEmbedding(f"User: {user} says hi", bytes(8), "m"),
        )

    await store.append_audit(alice_dm, audit_entry("a1"), platform="slack", user="UALICE")
    await store.append_audit(bob_dm, audit_entry("b2"), platform="slack", user="UBOB")
    assert await store.sessions_of_user("slack", "UALICE") == sorted([alice_dm.id, alice_thread.id])
    assert await store.sessions_of_user("discord", "UALICE") == []
    exported = await export_user(store, "slack", "UALICE")
    assert sorted(d["session_id"] for d in exported) == sorted([alice_dm.id, alice_thread.id])

    assert await erase_user(store, "slack", "UALICE") == 2
    assert await store.get(alice_dm) is None and await store.get(alice_thread) is None
    assert await store.get(bob_dm) is not None, "nobody else's own sessions are touched"
    assert len(await store.audit(bob_dm)) == 1 and len(await store.recall_items(bob_dm)) == 1
    assert await store.audit(alice_dm) == [] and await store.recall_items(alice_thread) == []
    assert await store.sessions_of_user("slack", "UALICE") == []
    if backend in ("redis", "cluster"):
        redis_store = store
        assert isinstance(redis_store, RedisStore)
        keys = [k async for k in redis_store._client.scan_iter(match="*")]
        left = sorted(k for k in keys if "UALICE" in k or alice_thread.id in k)
        assert left == sorted([alice_dm.store_key("erased"), alice_thread.store_key("erased")]), (
            "no key of hers is left anywhere but the tombstones that fence out turns still running"
        )
        tombstones = [await redis_store._client.get(k) for k in left]
        assert all(re.fullmatch(r"\d+:", t) for t in tombstones), f"which hold no text: {tombstones}"
        assert any(bob_dm.id in k for k in keys)


async def test_entities_merge_newest_first_and_come_back_with_the_window(store_factory: StoreFactory) -> None:
    from bot.memory import Entity

    store = store_factory()
    await store.save_entities(KEY, {"os": Entity("Windows 10", 1.0)})  # no session yet: nothing to attach to
    await turn(store, KEY, 1)
    await store.save_entities(KEY, {"os": Entity("Windows 10", 10.0), "vpn client": Entity("GlobalProtect", 10.0)})
    await store.save_entities(KEY, {"os": Entity("Windows 11", 20.0)})
    await store.save_entities(KEY, {"os": Entity("Windows 7", 5.0)})  # an older fact arriving late loses
    start = await store.begin_turn(KEY, event_id="e2", window=10)
    assert start.context is not None and start.lease is not None
    assert start.context.entities == {"os": Entity("Windows 11", 20.0), "vpn client": Entity("GlobalProtect", 10.0)}
    await store.commit_turn(start.lease, pair(2), platform="slack")
    record = await store.get(KEY)
    assert record is not None and record.entities["os"].value == "Windows 11"
    assert (await store.begin_turn(OTHER, event_id="x", window=10)).context.entities == {}  # type: ignore[union-attr]
    await store.delete(KEY)
    await turn(store, KEY, 3)
    record = await store.get(KEY)
    assert record is not None and record.entities == {}, "deleting a session deletes its entities"


async def test_encrypted_bodies_are_unreadable_at_rest_and_keys_rotate(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from cryptography.fernet import Fernet

    from bot.errors import StoreUnavailable
    from bot.memory.codec import EncryptedCodec, MessageCodec
    from tests.conftest import make_store

    if backend == "memory":
        pytest.skip("the in-process store keeps nothing at rest")
    url = (
        request.getfixturevalue({"redis": "redis_url", "cluster": "cluster_url"}[backend])
        if backend != "sqlite"
        else None
    )
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    made: list[SessionStore] = []

    def store_with(codec: MessageCodec) -> SessionStore:
        made.append(make_store(backend, tmp_path=tmp_path, redis_url=url, limits=StoreLimits(), codec=codec))
        return made[-1]

    try:
        writer = store_with(EncryptedCodec([old]))
        await turn(writer, KEY, 1, embedding=TurnEmbedding("User: question 1", bytes(8), "m"))
        rotated = store_with(EncryptedCodec([new, old]))  # new key first: new writes use it, old data still reads
        await turn(rotated, KEY, 2, embedding=TurnEmbedding("User: question 2", bytes(8), "m"))
        record = await rotated.get(KEY)
        assert record is not None
        assert [m.content for m in record.messages] == ["question 1", "answer 1", "question 2", "answer 2"]
        assert [i.text for i in await rotated.recall_items(KEY)] == ["User: question 1", "User: question 2"]

        raw = await raw_bodies(backend, writer, tmp_path)
        assert len(raw) == 6 and all(body.startswith("enc:") for body in raw), "messages and recalled turns"
        assert not any("question" in body for body in raw), "no plaintext at rest"
        with pytest.raises(StoreUnavailable, match="encrypted"):
            await store_with(MessageCodec()).get(KEY)
        with pytest.raises(StoreUnavailable, match="cannot be decrypted"):
            await store_with(EncryptedCodec([Fernet.generate_key().decode()])).get(KEY)
    finally:
        for store in made:
            await store.aclose()


async def raw_bodies(backend: str, store: SessionStore, tmp_path: Path) -> list[str]:
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(tmp_path / "sessions.db") as db:
            return [row[0] for row in db.execute("SELECT body FROM messages UNION ALL SELECT body FROM recall")]
    assert isinstance(store, RedisStore)
    messages = [str(b) for b in await store._client.lrange(KEY.store_key("msgs"), 0, -1)]
    recalled = [json.loads(m)["text"] for m in await store._client.zrange(KEY.store_key("recall"), 0, -1)]
    return messages + recalled


def audit_entry(event: str, tool: str = "create_ticket", *, at: float | None = None) -> AuditEntry:
    return AuditEntry(
        time=at if at is not None else time.time(),
        session_id=KEY.id,
        event_id=event,
        tool=tool,
        arguments={"summary": "VPN down", "token": "[redacted]"},
        outcome="ok",
        detail="INC-1",
        latency_ms=12.5,
    )


async def test_embeddings_are_saved_with_their_turn_and_come_back_once_out_of_the_window(
    store_factory: StoreFactory,
) -> None:
    store = store_factory(limits=StoreLimits(max_recall=3))
    vector = bytes(range(16))

    async def embedded_turn(key: SessionKey, n: int, *, window: int = 4, after: int = 0) -> tuple[RecallItem, ...]:
        start = await store.begin_turn(key, event_id=f"e{n}", window=window, recall_after=after)
        assert start.lease is not None and start.context is not None
        embedding = TurnEmbedding(f"turn {n} — café ☕", vector, "m") if n != 3 else None
        await store.commit_turn(start.lease, pair(n), platform=key.platform, embedding=embedding)
        return start.context.recall

    assert await embedded_turn(KEY, 1) == ()
    await embedded_turn(OTHER, 1)
    assert await embedded_turn(KEY, 2) == ()
    candidates = await embedded_turn(KEY, 3)  # the window of 4 messages still holds turns 1 and 2
    assert candidates == ()
    candidates = await embedded_turn(KEY, 4)  # turn 1 (messages 1-2) has left the window
    assert [(c.seq, c.text) for c in candidates] == [(1, "turn 1 — café ☕")]
    assert candidates[0].vector == vector and candidates[0].model == "m"
    candidates = await embedded_turn(KEY, 5, after=1)  # a caller holding turn 1 already reads only what is new
    assert [c.seq for c in candidates] == [3], "turn 2 (messages 3-4) has left the window since"
    assert await embedded_turn(KEY, 6, after=4) == (), "turn 3 left it, but had no embedding"
    assert [c.seq for c in await embedded_turn(KEY, 7, after=6)] == [7]
    items = await store.recall_items(KEY)
    assert [i.seq for i in items] == [9, 11, 13], "one per turn (turn 3 had none), under its first message, capped"
    start = await store.begin_turn(KEY, event_id="e8", window=4)
    assert start.context is not None and start.context.recall == (), "read only when asked for"
    assert start.lease is not None
    await store.abort_turn(start.lease)
    assert [i.text for i in await store.recall_items(OTHER)] == ["turn 1 — café ☕"]
    await store.delete(KEY)
    assert await store.recall_items(KEY) == []


async def test_the_audit_log_is_per_session_capped_indexed_and_erased(store_factory: StoreFactory) -> None:
    from bot.privacy import erase_user, export_user

    store = store_factory(limits=StoreLimits(max_audit=3))
    # A tool may run in a session's very first turn, before anything is committed; the turn may then fail.
    start = await store.begin_turn(KEY, event_id="e1", window=10)
    assert start.lease is not None
    await store.append_audit(KEY, audit_entry("e1"), platform="slack", user="U1")
    await store.abort_turn(start.lease)
    assert [e.event_id for e in await store.audit(KEY)] == ["e1"], "the log outlives an aborted first turn"
    assert KEY.id in await store.sessions_of_user("slack", "U1"), "and an erasure can still find it"
    exported = await export_user(store, "slack", "U1")
    assert [d["session_id"] for d in exported] == [KEY.id] and exported[0]["audit"][0]["tool"] == "create_ticket"

    await turn(store, KEY, 2)
    for n in range(3, 6):
        await store.append_audit(KEY, audit_entry(f"e{n}", "search_kb"), platform="slack", user="U1")
    entries = await store.audit(KEY)
    assert [e.event_id for e in entries] == ["e3", "e4", "e5"], "oldest first, capped"
    assert entries[0] == audit_entry("e3", "search_kb", at=entries[0].time)
    assert await store.audit(OTHER) == []

    await store.append_audit(OTHER, audit_entry("x1"), platform="slack", user="U2")
    assert await erase_user(store, "slack", "U1") == 1
    assert await store.audit(KEY) == [] and await store.recall_items(KEY) == []
    assert len(await store.audit(OTHER)) == 1, "nobody else's log is touched"


async def test_a_deleted_session_fences_out_every_write_of_the_turns_that_were_running(
    backend: str, store_factory: StoreFactory
) -> None:
    from bot.memory import Entity
    from bot.privacy import erase_user

    store = store_factory()
    eraser = second_client(backend, store_factory, store)  # an operator's `erase-user`, in another process
    await turn(store, KEY, 1)
    start = await store.begin_turn(KEY, event_id="e2", window=10)
    assert start.lease is not None and start.context is not None
    old = start.context.fence
    assert old == start.lease.token, "the context carries the lease's token for the turn's tools and upkeep"

    assert await erase_user(eraser, "slack", "U1") == 1
    with pytest.raises(LeaseLost):
        await store.commit_turn(start.lease, pair(2, event="e2"), platform="slack")
    retake = await store.begin_turn(KEY, event_id="e2", window=10, fence=old)
    assert retake.status is ClaimStatus.ERASED, "the turn cannot take its session back to save anyway"
    redelivery = await store.begin_turn(KEY, event_id="e2", window=10)
    assert redelivery.status is ClaimStatus.DUPLICATE, "nor can the platform's redelivery of the same message"
    assert not await store.save_summary(KEY, summary="summary of erased turns", after=0, upto=2, fence=old)
    await store.save_entities(KEY, {"os": Entity("Windows 11", time.time())}, fence=old)
    await store.append_audit(KEY, audit_entry("e2"), platform="slack", user="U1", fence=old)
    assert await store.get(KEY) is None and await store.audit(KEY) == []
    assert await store.sessions_of_user("slack", "U1") == [], "a refused write leaves no index entry behind"

    # The user writes again: a new, empty conversation, which the old turn's writes cannot reach either.
    fresh = await store.begin_turn(KEY, event_id="e3", window=10)
    assert fresh.status is ClaimStatus.ACQUIRED and fresh.context is not None and fresh.lease is not None
    assert fresh.context.messages == () and fresh.context.summary is None and fresh.context.entities == {}
    assert fresh.context.fence > old
    await store.commit_turn(fresh.lease, pair(3), platform="slack")
    assert not await store.save_summary(KEY, summary="summary of erased turns", after=0, upto=2, fence=old)
    await store.save_entities(KEY, {"os": Entity("Windows 11", time.time())}, fence=old)
    await store.append_audit(KEY, audit_entry("e2"), platform="slack", user="U1", fence=old)
    record = await store.get(KEY)
    assert record is not None and [m.content for m in record.messages] == ["question 3", "answer 3"]
    assert record.summary is None and record.entities == {} and await store.audit(KEY) == []

    new = fresh.context.fence
    assert await store.save_summary(KEY, summary="new summary", after=0, upto=2, fence=new)
    await store.save_entities(KEY, {"os": Entity("macOS 14", time.time())}, fence=new)
    await store.append_audit(KEY, audit_entry("e3"), platform="slack", user="U1", fence=new)
    record = await store.get(KEY)
    assert record is not None and record.summary == "new summary" and record.entities["os"].value == "macOS 14"
    assert [e.event_id for e in await store.audit(KEY)] == ["e3"]
    assert await store.sessions_of_user("slack", "U1") == [KEY.id]
    other = await store.begin_turn(OTHER, event_id="e2", window=10, fence=old)
    assert other.status is ClaimStatus.ACQUIRED, "the tombstone is the deleted session's alone"


async def test_every_field_holding_user_text_is_encrypted_and_plaintext_rows_stay_readable(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from cryptography.fernet import Fernet

    from bot.memory import Entity
    from bot.memory.codec import EncryptedCodec, MessageCodec
    from tests.conftest import make_store

    if backend == "memory":
        pytest.skip("the in-process store keeps nothing at rest")
    url = (
        request.getfixturevalue({"redis": "redis_url", "cluster": "cluster_url"}[backend])
        if backend != "sqlite"
        else None
    )
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    made: list[SessionStore] = []

    def store_with(codec: MessageCodec) -> SessionStore:
        made.append(make_store(backend, tmp_path=tmp_path, redis_url=url, limits=StoreLimits(), codec=codec))
        return made[-1]

    vector = bytes(range(32))
    tricky = "enc:not a token, just what the user typed"
    try:
        # Written before encryption was switched on: every shape stays readable afterwards.
        plain = store_with(MessageCodec())
        await turn(plain, OTHER, 1, embedding=TurnEmbedding("User: plain turn", vector, "m"))
        assert await plain.save_summary(OTHER, summary=tricky, after=0, upto=2)
        await plain.save_entities(OTHER, {"location": Entity("raw: Hamburg office", 1.0)})
        await plain.append_audit(OTHER, audit_entry("p1"), platform="slack", user="U2")

        writer = store_with(EncryptedCodec([old]))
        start = await writer.begin_turn(KEY, event_id="e1", window=10)
        assert start.lease is not None and start.context is not None
        await writer.commit_turn(
            start.lease, pair(1), platform="slack", embedding=TurnEmbedding("User: Quokkastrasse 7", vector, "m")
        )
        fence = start.context.fence
        assert await writer.save_summary(KEY, summary="The user lives at Quokkastrasse 7", after=0, upto=2, fence=fence)
        await writer.save_entities(KEY, {"location": Entity("Quokkastrasse 7", 1.0)}, fence=fence)
        await writer.save_entities(KEY, {"location": Entity("older", 0.5)}, fence=fence)  # still merged by age
        entry = AuditEntry(time.time(), KEY.id, "e1", "create_ticket", {"details": "ship to Quokkastrasse 7"}, "ok",
                           "INC-1 Quokkastrasse 7", 3.0)  # fmt: skip
        await writer.append_audit(KEY, entry, platform="slack", user="U1", fence=fence)

        rotated = store_with(EncryptedCodec([new, old]))
        record = await rotated.get(KEY)
        assert record is not None and record.summary == "The user lives at Quokkastrasse 7"
        assert record.entities == {"location": Entity("Quokkastrasse 7", 1.0)}
        assert await rotated.audit(KEY) == [entry]
        (item,) = await rotated.recall_items(KEY)
        assert item.text == "User: Quokkastrasse 7" and item.vector == vector
        work = await rotated.unsummarized(KEY, upto=2)
        assert work.summary == "The user lives at Quokkastrasse 7"
        listed = {r.session_id: r.meta.turns for r in await store_with(MessageCodec()).list_sessions()}
        assert listed == {KEY.id: 1, OTHER.id: 1}, "a listing reads no text, so it needs no key"

        legacy = await rotated.get(OTHER)
        assert legacy is not None and legacy.summary == tricky, "plain text that looks sealed is not taken for it"
        assert legacy.entities["location"].value == "raw: Hamburg office"
        assert [e.event_id for e in await rotated.audit(OTHER)] == ["p1"]
        assert [(i.text, i.vector) for i in await rotated.recall_items(OTHER)] == [("User: plain turn", vector)]

        raw = await raw_fields(backend, writer, tmp_path)
        assert set(raw) == {"summary", "entity", "audit", "vector"}
        for name, values in raw.items():
            assert values and all(v.startswith("enc:") for v in values), name
            assert not any("Quokka" in v for v in values), name
    finally:
        for store in made:
            await store.aclose()


async def raw_fields(backend: str, store: SessionStore, tmp_path: Path) -> dict[str, list[str]]:
    """The stored form of KEY's summary, entity values, audit entries and recall vectors, as the store holds them."""
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(tmp_path / "sessions.db") as db:
            column = {
                "summary": "SELECT summary FROM sessions WHERE id = ?",
                "entity": "SELECT value FROM entities WHERE session_id = ?",
                "audit": "SELECT body FROM audit WHERE session_id = ?",
                "vector": "SELECT vector FROM recall WHERE session_id = ?",
            }
            return {
                name: [v if isinstance(v, str) else v.hex() for (v,) in db.execute(sql, (KEY.id,))]
                for name, sql in column.items()
            }
    assert isinstance(store, RedisStore)
    client = store._client
    entities = await client.hgetall(KEY.store_key("entities"))
    audit = await client.xrange(KEY.store_key("audit"))
    recall = await client.zrange(KEY.store_key("recall"), 0, -1)
    return {
        "summary": [await client.get(KEY.store_key("summary"))],
        "entity": [json.loads(v)["value"] for v in entities.values()],
        "audit": [fields["entry"] for _, fields in audit],
        "vector": [json.loads(m)["vector"] for m in recall],
    }
