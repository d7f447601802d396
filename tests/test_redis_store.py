"""What only the Redis store promises: two round trips a turn, one hash slot, TTL on every key, recovery."""

from __future__ import annotations

import asyncio

import pytest
from redis.cluster import key_slot

from bot.core import MEMORY_UNAVAILABLE_REPLY, SupportBot
from bot.embeddings import HashingEmbeddings
from bot.memory import SessionContext, StoreLimits
from bot.memory.redis import RedisStore
from bot.messages import ReplyKind, StoredMessage
from bot.recall import Recall
from bot.strategies import WindowStrategy
from bot.tools import Toolbox, TurnFacts
from tests.conftest import counting_client
from tests.fakes.models import RecordingModel
from tests.helpers import make_bot, message
from tests.redis_server import RedisServer


def command_calls(server: RedisServer) -> dict[str, int]:
    """Calls per command since start, counting the commands scripts run inside Redis too."""
    client = server.client()
    stats = client.info("commandstats")
    client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def per_turn_cost(
    redis_server: RedisServer, redis_url: str, history_len: int, turns: int = 5, *, recall: bool = False
) -> tuple[float, dict[str, float]]:
    """Round trips and commands per turn on a session holding ``history_len`` messages."""
    client, counter = counting_client(redis_url)
    store = RedisStore(client, limits=StoreLimits(max_messages=50_000))
    bot = make_bot(
        store,
        RecordingModel(),
        strategy=WindowStrategy(k=20, max_tokens=10_000),
        recall=Recall(embeddings=HashingEmbeddings(), model_name="hashing", min_score=-1.0) if recall else None,
    )
    channel = f"history-{history_len}-{recall}"
    try:
        warm_up = message("warm up", channel=channel)
        await bot.handle(warm_up)  # loads the scripts once
        filler = [StoredMessage("user", f"old {i}", float(i)).to_json() for i in range(history_len)]
        await client.rpush(bot.session_key(warm_up).store_key("msgs"), *filler)
        await client.hincrby(bot.session_key(warm_up).store_key("meta"), "seq", history_len)
        sends, calls = counter.sends, command_calls(redis_server)
        for i in range(turns):
            reply = await bot.handle(message(f"question {i}", channel=channel))
            assert reply is not None and reply.kind is ReplyKind.ANSWER
        after = command_calls(redis_server)
        delta = {k: (after[k] - calls.get(k, 0)) / turns for k in after if k != "info"}
        return (counter.sends - sends) / turns, {k: v for k, v in delta.items() if v}
    finally:
        await bot.aclose()
        await store.aclose()


async def test_an_uncontended_turn_costs_two_round_trips_whatever_the_history(
    redis_url: str, redis_server: RedisServer
) -> None:
    short_trips, short_commands = await per_turn_cost(redis_server, redis_url, 10)
    long_trips, long_commands = await per_turn_cost(redis_server, redis_url, 10_000)
    assert short_trips == long_trips == 2
    assert short_commands["evalsha"] == 2, "begin and commit are one script call each"
    assert short_commands == long_commands, "the work inside the scripts does not grow with the history"
    assert short_commands["lrange"] == 1 and "hgetall" in short_commands


async def test_vector_recall_rides_in_the_same_two_round_trips(redis_url: str, redis_server: RedisServer) -> None:
    for history in (10, 10_000):
        trips, commands = await per_turn_cost(redis_server, redis_url, history, recall=True)
        assert trips == 2 and commands["evalsha"] == 2
        assert commands["zadd"] == 2, "the commit script saves the delivery id and the turn's embedding"
    assert commands["zrangebyscore"] == 1, "with turns out of the window, begin reads the candidates"


async def test_recall_reads_only_the_vectors_that_left_the_window_since_the_last_turn(
    redis_url: str, redis_server: RedisServer
) -> None:
    store = RedisStore.from_url(redis_url)
    recall = Recall(embeddings=HashingEmbeddings(), model_name="hashing", min_score=-1.0)
    bot = make_bot(store, RecordingModel(), strategy=WindowStrategy(k=10, max_tokens=10_000), recall=recall)

    def bytes_sent() -> int:
        client = redis_server.client()
        sent = int(client.info("stats")["total_net_output_bytes"])
        client.close()
        return sent

    async def cost_of_ten_turns(first: int) -> int:
        before = bytes_sent()
        for n in range(first, first + 10):
            await bot.handle(message(f"question {n} about the printer"))
        return bytes_sent() - before

    await cost_of_ten_turns(0)
    early = await cost_of_ten_turns(10)  # about 5 to 15 vectors (4 KB each) out of the window
    late = await cost_of_ten_turns(50)  # 45 to 55
    assert late < early * 1.2, f"each turn reads what is new, not every vector again: {early} B then {late} B"
    assert "question 0 " in recalled_texts(bot), "and recall still ranks the oldest turns"
    await bot.aclose()
    await store.aclose()


def recalled_texts(bot: SupportBot) -> str:
    prompts = bot.model.prompts  # type: ignore[attr-defined]
    return "\n".join(m.text for m in prompts[-1] if m.type == "system")


async def test_every_key_of_a_session_shares_one_slot_and_the_idle_ttl(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, limits=StoreLimits(idle_ttl=3_600))
    bot = make_bot(store, RecordingModel(), recall=Recall(embeddings=HashingEmbeddings(), model_name="hashing"))
    await bot.handle(message("hello"))
    key = bot.session_key(message("hello"))
    facts = TurnFacts(key, "e-audit", "slack", "U1", SessionContext(), "hello")
    await Toolbox(store=store, escalate=True).run(
        {"name": "escalate_to_human", "args": {"reason": "x"}, "id": "c1"}, facts
    )
    client = store._client
    keys = [k async for k in client.scan_iter(match="sb:{*")]
    assert {k.rsplit(":", 1)[1] for k in keys} == {"msgs", "meta", "users", "seen", "fence", "recall", "audit"}
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert [k async for k in client.scan_iter(match="sb:user:*")] == ["sb:user:{slack:U1}"]
    for k in [*keys, "sb:user:{slack:U1}"]:
        ttl = await client.pttl(k)
        assert 3_590_000 < ttl <= 3_600_000, k
    await bot.aclose()
    await store.aclose()


async def test_delete_leaves_no_key_behind_but_a_tombstone_that_expires(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, limits=StoreLimits(dedupe_ttl=600))
    bot = make_bot(store, RecordingModel())
    mine, other = message("mine", user="U1"), message("other", user="U2")
    await bot.handle(mine)
    await bot.handle(other)
    erased = bot.session_key(mine)
    await store.delete(erased)
    keys = [k async for k in store._client.scan_iter(match="sb:{*")]
    assert keys and all(bot.session_key(other).id in k for k in keys if k != erased.store_key("erased"))
    assert await store._client.get(erased.store_key("erased")) == "1:", "the last token handed out, no text"
    assert 590_000 < await store._client.pttl(erased.store_key("erased")) <= 600_000
    await bot.aclose()
    await store.aclose()


async def test_redis_down_gets_a_polite_reply_and_recovery_keeps_acknowledged_turns(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = RedisServer(tmp_path_factory.mktemp("restart"))
    server.start()
    store = RedisStore.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=0.5)
    bot = make_bot(store, RecordingModel())
    try:
        first = message("vpn is down", event_id="E1")
        assert (await bot.handle(first)) is not None
        server.stop()
        down = message("still down", event_id="E2")
        reply = await bot.handle(down)
        assert reply is not None and reply.kind is ReplyKind.NOTICE and reply.text == MEMORY_UNAVAILABLE_REPLY
        server.start()
        again = await bot.handle(down)  # the platform's redelivery
        assert again is not None and again.kind is ReplyKind.ANSWER
        record = await store.get(bot.session_key(first))
        assert record is not None
        assert [m.content for m in record.messages] == [
            "vpn is down", "reply to vpn is down", "still down", "reply to still down",
        ]  # fmt: skip
    finally:
        await bot.aclose()
        await store.aclose()
        server.stop()


async def test_a_burst_beyond_the_connection_pool_queues_instead_of_failing(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, max_connections=4)
    bot = make_bot(store, RecordingModel(delay=0.01))
    replies = await asyncio.gather(*(bot.handle(message(f"q{i}", channel=f"c{i}")) for i in range(200)))
    assert all(r is not None and r.kind is ReplyKind.ANSWER for r in replies)
    await bot.aclose()
    await store.aclose()
