"""The turn pipeline: ordering, idempotency, failures and bad input, on every backend."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.messages.utils import count_tokens_approximately

from bot.core import (
    EMPTY_MESSAGE_REPLY,
    INVALID_MESSAGE_REPLY,
    MEMORY_UNAVAILABLE_REPLY,
    MODEL_FAILED_REPLY,
    RATE_LIMITED_REPLY,
    STREAM_BROKEN_NOTE,
)
from bot.errors import ShuttingDown
from bot.memory import ClaimStatus, SessionStore, StoreLimits
from bot.memory.redis import RedisStore
from bot.messages import IncomingMessage, ReplyKind
from bot.ratelimit import RateLimiter
from bot.session import Scope, session_key_for
from bot.strategies import BufferStrategy, WindowStrategy
from tests.conftest import StoreFactory, second_client
from tests.fakes.models import RecordingModel
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import make_bot, message, openai_model, settle
from tests.redis_server import RedisServer


async def history(store: SessionStore, msg: IncomingMessage) -> list[str]:
    """The stored contents of ``msg``'s session under the default scope."""
    record = await store.get(session_key_for(msg, Scope.THREAD_USER))
    return [m.content for m in record.messages] if record else []


async def test_fifty_concurrent_turns_on_one_session_complete_in_order(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(max_messages=1_000))
    model = RecordingModel()
    bot = make_bot(store, model, strategy=BufferStrategy(max_messages=1_000))
    msgs = [message(f"step {i}") for i in range(50)]
    replies = await asyncio.gather(*(bot.handle(m) for m in msgs))
    assert [r.text for r in replies if r] == [f"reply to step {i}" for i in range(50)]
    stored = await history(store, msgs[0])
    assert stored == [x for i in range(50) for x in (f"step {i}", f"reply to step {i}")]
    # Each prompt saw exactly the turns before it.
    for i, prompt in enumerate(model.prompts):
        assert [m.text for m in prompt[1:]] == stored[: 2 * i] + [f"step {i}"]
    await bot.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
async def test_two_bots_sharing_a_store_never_interleave_or_lose_turns(store_factory: StoreFactory) -> None:
    store_one = store_factory(StoreLimits(max_messages=1_000))
    store_two = store_factory(StoreLimits(max_messages=1_000))
    one, two = make_bot(store_one, RecordingModel(delay=0.002)), make_bot(store_two, RecordingModel(delay=0.002))
    msgs = [message(f"step {i}") for i in range(50)]
    replies = await asyncio.gather(*(one.handle(m) if i % 2 else two.handle(m) for i, m in enumerate(msgs)))
    assert all(r is not None and r.kind is ReplyKind.ANSWER for r in replies)
    stored = await history(store_one, msgs[0])
    assert len(stored) == 100
    users, answers = stored[::2], stored[1::2]
    assert sorted(users) == sorted(f"step {i}" for i in range(50))
    assert answers == [f"reply to {u}" for u in users], "every question is followed by its own answer"
    for parity in (0, 1):
        mine = [u for u in users if int(u.split()[1]) % 2 == parity]
        assert mine == sorted(mine, key=lambda u: int(u.split()[1])), "each bot's turns keep their order"
    await one.aclose()
    await two.aclose()


async def test_one_event_delivered_five_times_gets_one_model_call_and_one_reply(
    store_factory: StoreFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.delay = 0.05
    bot = make_bot(store_factory(), openai_model(fake_openai.base_url))
    msg = message("printer is jammed", event_id="Ev-1")
    replies = await asyncio.gather(*(bot.handle(msg) for _ in range(5)))
    assert len([r for r in replies if r is not None]) == 1
    assert len(fake_openai.requests) == 1
    assert await bot.handle(msg) is None, "a later redelivery is also recognised"
    assert len(fake_openai.requests) == 1
    await bot.aclose()


async def test_redelivery_after_a_turn_died_before_answering_is_processed(
    backend: str, store_factory: StoreFactory
) -> None:
    first_store = store_factory()
    dying_model = RecordingModel(delay=5)
    dying = make_bot(first_store, dying_model)
    msg = message("laptop is slow", event_id="Ev-2")
    pending = asyncio.ensure_future(dying.handle(msg))
    while not dying_model.prompts:  # the turn holds the lease and is waiting for the model
        await asyncio.sleep(0.01)
    await dying.aclose(grace=0)  # the process goes away mid-turn
    with pytest.raises(asyncio.CancelledError):
        await pending
    survivor_model = RecordingModel()
    survivor = make_bot(second_client(backend, store_factory, first_store), survivor_model)
    reply = await survivor.handle(msg)
    assert reply is not None and reply.text == "reply to laptop is slow"
    assert await history(first_store, msg) == ["laptop is slow", "reply to laptop is slow"]
    await survivor.aclose()


async def test_a_crashed_holder_blocks_its_delivery_only_until_the_lease_expires(store_factory: StoreFactory) -> None:
    lease_ttl = 1.5  # room for one turn on a busy machine
    store = store_factory(StoreLimits(lease_ttl=lease_ttl))
    msg = message("wifi drops", event_id="Ev-3")
    bot = make_bot(store, RecordingModel())
    taken = time.monotonic()
    crashed = await store.begin_turn(bot.session_key(msg), event_id="Ev-3", window=10)
    assert crashed.status is ClaimStatus.ACQUIRED  # and then the process vanished
    assert await bot.handle(msg) is None, "while the lease lives, another attempt is in progress"
    await asyncio.sleep(taken + lease_ttl + 0.1 - time.monotonic())
    reply = await bot.handle(msg)
    assert reply is not None and reply.kind is ReplyKind.ANSWER
    await bot.aclose()


async def test_a_busy_session_waits_for_the_other_holder(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(lease_ttl=5))
    bot = make_bot(store, RecordingModel())
    msg = message("second question")
    other = await store.begin_turn(bot.session_key(msg), event_id="someone-else", window=10)
    assert other.lease is not None

    async def finish_other() -> None:
        await asyncio.sleep(0.2)
        await store.abort_turn(other.lease)

    releaser = asyncio.create_task(finish_other())
    reply = await bot.handle(msg)
    await releaser
    assert reply is not None and reply.text == "reply to second question"
    await bot.aclose()


@pytest.mark.parametrize("failure", ["429", "500", "401", "hang"])
async def test_model_failure_gets_a_polite_reply_and_keeps_the_message(
    store_factory: StoreFactory, fake_openai: FakeOpenAI, failure: str
) -> None:
    store = store_factory()
    bot = make_bot(store, openai_model(fake_openai.base_url, SUPPORTBOT_LLM__TIMEOUT="0.5"))
    fake_openai.fail_next(failure, retry_after=0)  # type: ignore[arg-type]
    msg = message("outlook keeps asking for my password")
    reply = await bot.handle(msg)
    assert reply is not None and reply.kind is ReplyKind.FALLBACK and reply.text == MODEL_FAILED_REPLY
    assert await history(store, msg) == ["outlook keeps asking for my password"]
    assert await bot.handle(msg) is None, "the user was answered; a redelivery gets no second reply"
    follow_up = message("any luck?")
    reply = await bot.handle(follow_up)
    assert reply is not None and reply.kind is ReplyKind.ANSWER
    assert fake_openai.requests[-1].messages[1]["content"] == "outlook keeps asking for my password"
    await bot.aclose()


async def test_model_retries_are_bounded_by_config(store_factory: StoreFactory, fake_openai: FakeOpenAI) -> None:
    bot = make_bot(store_factory(), openai_model(fake_openai.base_url, SUPPORTBOT_LLM__MAX_RETRIES="2"))
    fake_openai.fail_next("500", times=2)
    reply = await bot.handle(message("vpn"))
    assert reply is not None and reply.kind is ReplyKind.ANSWER
    assert len(fake_openai.requests) == 3
    fake_openai.fail_next("500", times=3)
    reply = await bot.handle(message("vpn again"))
    assert reply is not None and reply.kind is ReplyKind.FALLBACK
    assert len(fake_openai.requests) == 6
    await bot.aclose()


async def test_stream_yields_the_reply_in_order_and_stores_it(
    store_factory: StoreFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_size = 3
    store = store_factory()
    bot = make_bot(store, openai_model(fake_openai.base_url))
    msg = message("how do I add a printer")
    chunks = [c async for c in bot.stream(msg)]
    assert len(chunks) > 3 and "".join(chunks) == "echo: how do I add a printer"
    assert fake_openai.requests[0].stream
    assert await history(store, msg) == ["how do I add a printer", "echo: how do I add a printer"]
    assert [c async for c in bot.stream(msg)] == [], "a redelivery streams nothing"
    await bot.aclose()


async def test_a_stream_that_breaks_midway_is_finished_with_a_note(
    store_factory: StoreFactory, fake_openai: FakeOpenAI
) -> None:
    store = store_factory()
    bot = make_bot(store, openai_model(fake_openai.base_url))
    fake_openai.fail_next("break_stream")
    msg = message("my mailbox is full and I cannot receive mail")
    text = "".join([c async for c in bot.stream(msg)])
    assert text.startswith("echo: ") and text.endswith(STREAM_BROKEN_NOTE)
    stored = await history(store, msg)
    assert stored == [msg.text, text], "the user saw a partial answer; memory holds exactly that"
    await bot.aclose()


async def test_a_stream_whose_consumer_leaves_still_completes_the_turn(store_factory: StoreFactory) -> None:
    store = store_factory()
    bot = make_bot(store, RecordingModel(delay=0.05))
    msg = message("reset my password please")
    stream = bot.stream(msg)
    first = await anext(stream)
    assert first
    await stream.aclose()  # the browser tab closed
    await settle(bot)
    await bot.aclose()
    assert await history(store, msg) == ["reset my password please", "reply to reset my password please "]


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n", "\x00\x01"])
async def test_empty_messages_get_a_notice_and_store_nothing(store_factory: StoreFactory, text: str) -> None:
    store = store_factory()
    model = RecordingModel()
    bot = make_bot(store, model)
    reply = await bot.handle(message(text))
    assert reply is not None and reply.kind is ReplyKind.NOTICE and reply.text == EMPTY_MESSAGE_REPLY
    assert model.prompts == [] and await store.list_sessions() == []
    await bot.aclose()


async def test_a_huge_message_is_cut_with_a_visible_note(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    bot = make_bot(store, model, max_message_chars=1_000)
    msg = message("A" * 100_000)
    reply = await bot.handle(msg)
    assert reply is not None and reply.kind is ReplyKind.ANSWER
    stored = (await history(store, msg))[0]
    assert stored.startswith("A" * 1_000) and "A" * 1_001 not in stored
    assert "[message truncated: it had 100,000 characters; the first 1,000 were kept]" in stored
    assert model.prompts[0][-1].text == stored
    await bot.aclose()


async def test_lone_surrogates_and_odd_unicode_are_stored_safely(
    store_factory: StoreFactory, fake_openai: FakeOpenAI
) -> None:
    store = store_factory()
    bot = make_bot(store, openai_model(fake_openai.base_url))
    msg = message("broken \ud800 text \udfff with 🧑‍💻 and \u202e rtl")
    reply = await bot.handle(msg)
    assert reply is not None and reply.kind is ReplyKind.ANSWER
    assert await history(store, msg) == [
        "broken \ufffd text \ufffd with 🧑‍💻 and \u202e rtl",
        "echo: broken \ufffd text \ufffd with 🧑‍💻 and \u202e rtl",
    ]
    await bot.aclose()


async def test_ids_full_of_separators_stay_apart(store_factory: StoreFactory) -> None:
    store = store_factory()
    bot = make_bot(store, RecordingModel())
    tricky = [
        message("one", channel="a:b", user="c"),
        message("two", channel="a", user="b:c"),
        message("three", channel="{a}", user="}{"),
        message("four", channel="a b", user="-"),
        message("five", channel="a%3Ab", user="c"),
    ]
    for msg in tricky:
        await bot.handle(msg)
    for msg in tricky:
        assert await history(store, msg) == [msg.text, f"reply to {msg.text}"]
    assert len(await store.list_sessions()) == len(tricky)
    await bot.aclose()


async def test_an_overlong_id_is_refused_politely(store_factory: StoreFactory) -> None:
    store = store_factory()
    bot = make_bot(store, RecordingModel())
    reply = await bot.handle(message("hello", channel="C" * 10_000))
    assert reply is not None and reply.kind is ReplyKind.NOTICE and reply.text == INVALID_MESSAGE_REPLY
    assert await store.list_sessions() == []
    await bot.aclose()


async def test_scopes_decide_who_shares_a_thread(store_factory: StoreFactory) -> None:
    store = store_factory()
    per_user, shared = RecordingModel(), RecordingModel()
    bot_user = make_bot(store, per_user, scope=Scope.THREAD_USER)
    bot_thread = make_bot(store, shared, scope=Scope.THREAD)
    for bot in (bot_user, bot_thread):
        await bot.handle(message("alice: vpn down", thread="t1", user="alice"))
        await bot.handle(message("bob: me too", thread="t1", user="bob"))
    assert [m.text for m in per_user.prompts[1][1:]] == ["bob: me too"]
    assert [m.text for m in shared.prompts[1][1:]] == ["alice: vpn down", "reply to alice: vpn down", "bob: me too"]
    await bot_thread.handle(message("dm from alice", channel="D1", user="alice", is_direct=True))
    await bot_thread.handle(message("dm from bob", channel="D1", user="bob", is_direct=True))
    assert [m.text for m in shared.prompts[-1][1:]] == ["dm from bob"], "direct messages are always per user"
    await bot_user.aclose()
    await bot_thread.aclose()


async def test_a_store_failing_after_a_streamed_answer_adds_one_notice(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = RedisServer(tmp_path_factory.mktemp("stream-store-down"), appendonly=False)
    server.start()
    store = RedisStore.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=0.5)
    model = RecordingModel(gate=asyncio.Event())
    bot = make_bot(store, model)
    try:
        stream = bot.stream(message("my laptop will not turn on"))
        reading = asyncio.ensure_future(anext(stream))
        while not model.prompts:  # the turn has begun, and the model is answering
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.stop)
        model.gate.set()
        text = await reading + "".join([c async for c in stream])
        assert text.startswith("reply to my laptop")
        assert text.count(MEMORY_UNAVAILABLE_REPLY) == 1 and text.endswith(f"_({MEMORY_UNAVAILABLE_REPLY})_")
    finally:
        await bot.aclose()
        await store.aclose()
        server.stop()


async def test_a_closing_bot_refuses_new_messages(store_factory: StoreFactory) -> None:
    bot = make_bot(store_factory(), RecordingModel())
    await bot.aclose()
    with pytest.raises(ShuttingDown):
        await bot.handle(message("hello"))


def test_the_window_keeps_the_last_k_messages_within_the_token_budget() -> None:
    from langchain_core.messages import AIMessage, HumanMessage

    history = [AIMessage("stray reply")] + [
        m for i in range(10) for m in (HumanMessage(f"question {i} " * 20), AIMessage(f"answer {i} " * 20))
    ]
    roomy = WindowStrategy(k=50, max_tokens=100_000).select(history)
    assert roomy == history[1:], "under budget everything stays, except replies before the first question"
    tight = WindowStrategy(k=50, max_tokens=300).select(history)
    assert 0 < len(tight) < len(history) - 1 and tight[0].type == "human"
    assert tight == history[-len(tight) :], "the newest messages are the ones kept"
    assert count_tokens_approximately(tight) <= 300


async def test_a_bursting_user_is_refused_politely_without_slowing_others(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    bot = make_bot(store, model, rate_limit_messages=3, rate_limit_period=60)
    burst = await asyncio.gather(*(bot.handle(message(f"spam {i}", user="noisy", channel=f"c{i}")) for i in range(10)))
    answered = [r for r in burst if r is not None and r.kind is ReplyKind.ANSWER]
    refused = [r for r in burst if r is not None and r.kind is ReplyKind.NOTICE]
    assert len(answered) == 3 and len(refused) == 7
    assert all(r.text == RATE_LIMITED_REPLY for r in refused)
    calm = await bot.handle(message("my printer is offline", user="calm"))
    assert calm is not None and calm.kind is ReplyKind.ANSWER
    assert len(model.prompts) == 4, "refused messages never reach the model"
    await bot.aclose()


def test_the_rate_limit_window_slides() -> None:
    now = [0.0]
    limiter = RateLimiter(messages=2, period=10, clock=lambda: now[0])
    assert limiter.allow("u") and limiter.allow("u") and not limiter.allow("u")
    now[0] = 10.5
    assert limiter.allow("u"), "the oldest message left the window"
    assert limiter.allow("other") and len(limiter) == 2


@pytest.mark.parametrize("streaming", [False, True])
async def test_with_memory_down_the_bot_can_answer_without_it_and_say_so(streaming: bool) -> None:
    from bot.core import STATELESS_NOTE
    from tests.redis_server import free_port

    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    model = RecordingModel()
    bot = make_bot(store, model, answer_without_memory=True)
    msg = message("my VPN is down")
    if streaming:
        text = "".join([c async for c in bot.stream(msg)])
    else:
        reply = await bot.handle(msg)
        assert reply is not None and reply.kind is ReplyKind.STATELESS
        text = reply.text
    assert text.startswith("reply to my VPN is down") and text.endswith(STATELESS_NOTE)
    assert [m.text for m in model.prompts[0][1:]] == ["my VPN is down"], "no history, just the new message"
    await bot.aclose()
    await store.aclose()
