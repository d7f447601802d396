"""Nothing acknowledged is lost: real ``supportbot serve`` processes killed, stopped and cut off from their store.

Every test acknowledges Slack events (signed requests to ``/slack/events``, answered 200), then breaks something:
SIGKILL right after the acknowledgements, during the model call or between the turn's save and its post; SIGTERM
with a model slower than the grace period; the store down when an event arrives; Redis restarted under load.
Each then checks that every acknowledged message is answered exactly once, in its own thread, in order, and is
in the session's memory.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.inbox.redis import RedisInbox
from bot.inbox.sqlite import SqliteInbox
from bot.memory import SessionStore
from bot.memory.redis import RedisStore, redis_client
from bot.memory.sqlite import SqliteStore
from bot.session import SessionKey
from tests.fakes.openai_server import FakeOpenAI, echo_responder
from tests.fakes.slack_server import FakeSlack
from tests.fleet import Fleet, start_fleet, stop_fleet
from tests.redis_server import RedisServer

CHANNEL = "C0DURABLE"
GUARD_S = 90.0  # a hang guard, far above any wait on a busy machine; the tests wait on events, not on it
# Short leases and visibility timeouts, so a dead process's work is taken over within seconds.
FAST_RECOVERY = {"SUPPORTBOT_MEMORY__LEASE_TTL": "2s", "SUPPORTBOT_INBOX__VISIBILITY": "2s"}


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def thread_ts(n: int) -> str:
    return f"17{n:08d}.000100"


def mention(fake: FakeSlack, *, thread: str, n: int, user: str = "U1") -> dict[str, Any]:
    """The ``n``-th message of ``thread`` (its first one opens the thread)."""
    ts = thread if n == 0 else f"{thread[:-3]}{n + 1:03d}"
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@UBOT> {thread} question {n}",
        "ts": ts,
        "channel": CHANNEL,
    }
    if n:
        event["thread_ts"] = thread
    return fake.event_payload(event)


def replies_in(fake: FakeSlack, thread: str) -> list[str]:
    return [m["text"] for m in fake.messages(CHANNEL) if m.get("bot_id") and m.get("thread_ts") == thread]


def expected(thread: str, count: int) -> list[str]:
    return [f"echo: {thread} question {n}" for n in range(count)]


async def until(condition: Any, what: str) -> None:
    """Wait for ``condition()`` (sync or async) to hold; the guard only catches a hang."""
    deadline = time.monotonic() + GUARD_S
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def send_all(fleet: Fleet, fake: FakeSlack, threads: list[str], turns: int, *, to: int = 0) -> None:
    """Deliver every message of every thread, each acknowledged 200, without waiting for answers."""
    for n in range(turns):
        statuses = await asyncio.gather(*(fleet.deliver(to, mention(fake, thread=t, n=n)) for t in threads))
        assert statuses == [200] * len(threads)


async def assert_answered_once(
    fake: FakeSlack, store: SessionStore, inbox: SqliteInbox | RedisInbox, threads: list[str], turns: int
) -> None:
    """Every message answered once, in order, in its thread, and remembered; nothing left in the inbox."""
    await until(lambda: all(len(replies_in(fake, t)) >= turns for t in threads), "every reply")

    async def empty() -> bool:
        return (await inbox.stats()).depth == 0

    await until(empty, "the inbox to empty")  # nothing left to answer, so no late duplicate can come
    for thread in threads:
        assert replies_in(fake, thread) == expected(thread, turns), thread
        record = await store.get(SessionKey("slack", "T1", CHANNEL, thread, "U1"))
        assert record is not None
        assert [m.content for m in record.messages if m.role == "user"] == [
            f"{thread} question {n}" for n in range(turns)
        ]


async def test_sigkill_on_the_embedded_store_loses_nothing(
    tmp_path: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """One process on SQLite, killed with turns waiting and one in its model call, then started again."""
    db = tmp_path / "supportbot.db"
    fleet = await start_fleet(1, tmp_path, f"sqlite:///{db}", fake_slack, fake_openai, **FAST_RECOVERY)
    threads = [thread_ts(n) for n in range(4)]
    store, inbox = SqliteStore(str(db)), SqliteInbox(str(db), consumer="checker")
    try:
        fake_openai.delay = 600  # the first turns hang in the model call
        await send_all(fleet, fake_slack, threads, 2)
        await until(lambda: fake_openai.requests, "a turn to reach the model")
        fleet.kill(0)
        assert all(replies_in(fake_slack, t) == [] for t in threads)
        fake_openai.delay = 0
        await fleet.respawn(0)
        await assert_answered_once(fake_slack, store, inbox, threads, 2)
    finally:
        await stop_fleet(fleet)
        await store.aclose()
        await inbox.aclose()


@pytest.mark.parametrize("processes", [2, 4])
async def test_sigkill_mid_turn_is_answered_by_another_process(
    processes: int, tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Slack events and web chat messages reach one process, which dies in their model calls: the other processes
    take the Slack messages over from the inbox, and the web client's resend (same message_id) is answered once."""
    fleet = await start_fleet(processes, tmp_path, redis_url, fake_slack, fake_openai, **FAST_RECOVERY)
    threads = [thread_ts(100 + n) for n in range(6)]
    tabs = [f"durable-tab-{n:04d}" for n in range(4)]
    store = RedisStore.from_url(redis_url)
    inbox = RedisInbox(redis_client(redis_url), consumer="checker")
    model = asyncio.Event()

    async def held_echo(messages: list[dict[str, Any]]) -> str:
        await model.wait()
        return echo_responder(messages)

    async def web_chat(tab: str) -> str:
        """Send one message to process 0; when it dies, resend the same message_id to the next live process."""
        body = {"session_id": tab, "message": f"{tab} question", "message_id": f"{tab}-0"}
        for attempt in range(2_000):
            url = fleet.urls[0] if fleet.procs[0].poll() is None else fleet.urls[1 + attempt % (processes - 1)]
            try:
                async with fleet.http.post(f"{url}/api/chat", json=body) as response:
                    if response.status == 200:
                        return str((await response.json())["reply"])
                    assert response.status == 409, await response.text()  # still in progress elsewhere
            except (aiohttp.ClientError, OSError):
                pass  # that process died: resend
            await asyncio.sleep(0.05)
        raise AssertionError(f"{tab} was never answered")

    fake_openai.responder = held_echo
    try:
        await send_all(fleet, fake_slack, threads, 2, to=0)
        chats = asyncio.gather(*(web_chat(tab) for tab in tabs))
        # Every process has taken some first messages and is waiting on the model with them.
        total = len(threads) + len(tabs)
        await until(lambda: len(fake_openai.requests) >= total, "every conversation to reach the model")
        fleet.kill(0)
        model.set()
        assert await chats == [f"echo: {tab} question" for tab in tabs]
        await assert_answered_once(fake_slack, store, inbox, threads, 2)
        for tab in tabs:
            record = await store.get(SessionKey("web", None, tab, None, tab))
            assert record is not None and [m.content for m in record.messages] == [
                f"{tab} question",
                f"echo: {tab} question",
            ]
        # Follow-ups in those threads remember the recovered messages, wherever they land.
        for thread in threads:
            assert await fleet.deliver(1, mention(fake_slack, thread=thread, n=2)) == 200
        await assert_answered_once(fake_slack, store, inbox, threads, 3)
    finally:
        model.set()
        await stop_fleet(fleet)
        await store.aclose()
        await inbox.aclose()


async def test_sigkill_between_the_save_and_the_post_finishes_the_started_reply(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """The turn is saved and its reply half posted when the process dies: the next attempt completes that same
    message instead of asking the model again or posting a second reply."""
    fleet = await start_fleet(2, tmp_path, redis_url, fake_slack, fake_openai, **FAST_RECOVERY)
    thread = thread_ts(200)
    store = RedisStore.from_url(redis_url)
    inbox = RedisInbox(redis_client(redis_url), consumer="checker")
    release = fake_slack.hold("chat.stopStream")
    try:
        assert await fleet.deliver(0, mention(fake_slack, thread=thread, n=0)) == 200
        await until(fake_slack.held["chat.stopStream"].is_set, "the reply to be finishing")
        fleet.kill(0)
        release.set()  # what the dead process asked of Slack still lands; it did not finish the reply
        await assert_answered_once(fake_slack, store, inbox, [thread], 1)
        assert len(fake_openai.requests) == 1, "the saved answer is posted, the model is not asked again"
    finally:
        release.set()
        await stop_fleet(fleet)
        await store.aclose()
        await inbox.aclose()


async def test_sigkill_while_slack_creates_the_reply_finishes_that_reply(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Slack has created the reply's message but its answer never reached the process, so nothing noted where the
    reply went: the process restarted finds the unfinished message in the thread and finishes it, once."""
    fleet = await start_fleet(1, tmp_path, redis_url, fake_slack, fake_openai, **FAST_RECOVERY)
    first, second = thread_ts(250), thread_ts(251)
    store = RedisStore.from_url(redis_url)
    inbox = RedisInbox(redis_client(redis_url), consumer="checker")
    try:
        # An earlier, finished reply in the same thread must not be taken for the started one.
        assert await fleet.deliver(0, mention(fake_slack, thread=first, n=0)) == 200
        await assert_answered_once(fake_slack, store, inbox, [first], 1)
        release = fake_slack.hold("chat.startStream", applied=True)
        assert await fleet.deliver(0, mention(fake_slack, thread=first, n=1)) == 200
        assert await fleet.deliver(0, mention(fake_slack, thread=second, n=0)) == 200
        await until(fake_slack.held["chat.startStream"].is_set, "a reply to be started")
        fleet.kill(0)
        release.set()
        await fleet.respawn(0)
        await assert_answered_once(fake_slack, store, inbox, [first], 2)
        await assert_answered_once(fake_slack, store, inbox, [second], 1)
    finally:
        await stop_fleet(fleet)
        await store.aclose()
        await inbox.aclose()


async def test_sigterm_with_a_model_slower_than_the_grace_answers_later_once(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fleet = await start_fleet(
        1, tmp_path, redis_url, fake_slack, fake_openai, SUPPORTBOT_SERVER__SHUTDOWN_GRACE="1s", **FAST_RECOVERY
    )
    threads = [thread_ts(300 + n) for n in range(3)]
    store = RedisStore.from_url(redis_url)
    inbox = RedisInbox(redis_client(redis_url), consumer="checker")
    try:
        fake_openai.delay = 600
        await send_all(fleet, fake_slack, threads, 1)
        await until(lambda: len(fake_openai.requests) >= len(threads), "every turn to reach the model")
        fleet.procs[0].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(fleet.procs[0].wait, timeout=GUARD_S) == 0, fleet.log(0)
        assert all(replies_in(fake_slack, t) == [] for t in threads), "nothing half-answered at shutdown"
        fake_openai.delay = 0
        await fleet.respawn(0)
        await assert_answered_once(fake_slack, store, inbox, threads, 1)
    finally:
        await stop_fleet(fleet)
        await store.aclose()
        await inbox.aclose()


async def test_a_store_down_at_intake_is_a_503_and_slacks_retry_is_answered_once(
    tmp_path: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    fleet = await start_fleet(1, tmp_path, server.url, fake_slack, fake_openai, **FAST_RECOVERY)
    thread = thread_ts(400)
    payload = mention(fake_slack, thread=thread, n=0)
    try:
        server.stop()
        assert await fleet.deliver(0, payload) == 503  # not acknowledged: Slack delivers it again
        async with fleet.http.get(f"{fleet.urls[0]}/readyz") as response:
            assert response.status == 503
        server.start()
        assert await fleet.deliver(0, payload, retry=1) == 200
        assert await fleet.deliver(0, payload, retry=2) == 200  # recorded once, whatever the retries
        store = RedisStore.from_url(server.url)
        inbox = RedisInbox(redis_client(server.url), consumer="checker")
        try:
            await assert_answered_once(fake_slack, store, inbox, [thread], 1)
        finally:
            await store.aclose()
            await inbox.aclose()
    finally:
        await stop_fleet(fleet)
        server.stop()


async def test_a_redis_restart_under_load_fails_no_turn(
    tmp_path: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    server = RedisServer(tmp_path / "redis")  # append-only, fsync always: a restart keeps what was written
    server.start()
    fleet = await start_fleet(2, tmp_path, server.url, fake_slack, fake_openai, **FAST_RECOVERY)
    threads = [thread_ts(500 + n) for n in range(20)]
    try:
        fake_openai.delay = 0.5
        await send_all(fleet, fake_slack, threads, 1, to=0)
        await until(lambda: fake_openai.requests, "turns to be running")
        await asyncio.to_thread(server.restart)
        fake_openai.delay = 0
        for thread in threads:
            assert await fleet.deliver(1, mention(fake_slack, thread=thread, n=1)) == 200
        store = RedisStore.from_url(server.url)
        inbox = RedisInbox(redis_client(server.url), consumer="checker")
        try:
            await assert_answered_once(fake_slack, store, inbox, threads, 2)
        finally:
            await store.aclose()
            await inbox.aclose()
        unavailable = [m for m in fake_slack.messages(CHANNEL) if "temporarily unavailable" in m.get("text", "")]
        assert unavailable == []
    finally:
        await stop_fleet(fleet)
        server.stop()


async def test_web_and_worker_roles_scale_apart_on_one_redis(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """A web-role process records and acknowledges; a worker-role process answers; neither does the other's job."""
    web = await start_fleet(1, tmp_path / "web", redis_url, fake_slack, fake_openai, SUPPORTBOT_SERVER__ROLE="web")
    worker = await start_fleet(
        1, tmp_path / "worker", redis_url, fake_slack, fake_openai, SUPPORTBOT_SERVER__ROLE="worker"
    )
    threads = [thread_ts(600 + n) for n in range(3)]
    store = RedisStore.from_url(redis_url)
    inbox = RedisInbox(redis_client(redis_url), consumer="checker")
    try:
        await send_all(web, fake_slack, threads, 2)
        await assert_answered_once(fake_slack, store, inbox, threads, 2)
        async with worker.http.post(f"{worker.urls[0]}/slack/events", data="{}") as response:
            assert response.status == 404  # a worker takes no deliveries
        async with worker.http.post(f"{worker.urls[0]}/api/chat", json={}) as response:
            assert response.status == 404
        async with worker.http.get(f"{worker.urls[0]}/metrics") as response:
            assert "supportbot_inbox_depth" in await response.text()
    finally:
        await stop_fleet(web)
        await stop_fleet(worker)
        await store.aclose()
        await inbox.aclose()
