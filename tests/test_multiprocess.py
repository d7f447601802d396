"""Several ``supportbot serve`` processes on one Redis, fed Slack events round-robin and twice at once.

Promises under test: every user message gets exactly one reply, no turn is lost or duplicated, and each
session's turns stay in order — whichever process a delivery reaches.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.memory.redis import RedisStore
from bot.session import SessionKey
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.fleet import start_fleet, stop_fleet

CHANNEL = "C0MULTI"
GUARD_S = 60.0  # seconds a reply may take before the test calls it lost; far above any busy machine's wait


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def mention(fake: FakeSlack, *, user: str, text: str, ts: str, thread_ts: str) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": CHANNEL}
    if thread_ts != ts:
        event["thread_ts"] = thread_ts
    return fake.event_payload(event)


def replies_in(fake: FakeSlack, thread_ts: str) -> list[str]:
    return [m["text"] for m in fake.messages(CHANNEL) if m.get("bot_id") and m.get("thread_ts") == thread_ts]


@pytest.mark.parametrize("processes", [2, 4])
async def test_every_event_gets_one_reply_across_processes(
    processes: int,
    tmp_path: Path,
    redis_url: str,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.delay = 0.05
    fleet = await start_fleet(processes, tmp_path, redis_url, fake_slack, fake_openai)
    rng = random.Random(7)
    threads = [f"17000000{t:02d}.000100" for t in range(12)]
    turns_per_thread = 3
    try:

        async def converse(thread: str) -> None:
            for n in range(turns_per_thread):
                ts = thread if n == 0 else f"{thread[:-3]}{n + 1:03d}"
                payload = mention(fake_slack, user="U1", text=f"{thread} question {n}", ts=ts, thread_ts=thread)
                first = rng.randrange(processes)
                deliveries = [fleet.deliver(first, payload)]
                if rng.random() < 0.4:  # the same event reaches a second process at the same time
                    deliveries.append(fleet.deliver((first + 1) % processes, payload, retry=1))
                statuses = await asyncio.gather(*deliveries)
                assert all(status == 200 for status in statuses)
                deadline = time.monotonic() + GUARD_S
                while len(replies_in(fake_slack, thread)) < n + 1:
                    assert time.monotonic() < deadline, f"no reply to {thread} #{n}"
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(converse(thread) for thread in threads))
        await asyncio.sleep(0.5)  # a duplicate answered late would show up now
        for thread in threads:
            replies = replies_in(fake_slack, thread)
            assert replies == [f"echo: {thread} question {n}" for n in range(turns_per_thread)]
        assert len(fake_openai.requests) == len(threads) * turns_per_thread, "one model call per message"
        store = RedisStore.from_url(redis_url)
        try:
            for thread in threads:
                record = await store.get(SessionKey("slack", "T1", CHANNEL, thread, "U1"))
                assert record is not None
                expected = [
                    x
                    for n in range(turns_per_thread)
                    for x in (f"{thread} question {n}", f"echo: {thread} question {n}")
                ]
                assert [m.content for m in record.messages] == expected
        finally:
            await store.aclose()
    finally:
        await stop_fleet(fleet)


async def test_a_rolling_restart_under_load_loses_no_turn_and_answers_no_5xx(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.delay = 0.1
    fleet = await start_fleet(2, tmp_path, redis_url, fake_slack, fake_openai)
    statuses: list[int] = []
    # A fresh connection per request, as a load balancer would open to a draining backend: a process that
    # stopped listening refuses the connection and the client moves on to the other one.
    web = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    sessions = [f"rolling-session-{i:04d}" for i in range(16)]
    sent: dict[str, int] = dict.fromkeys(sessions, 0)
    restarted = asyncio.Event()

    async def send(session_id: str, n: int) -> None:
        body = {"session_id": session_id, "message": f"{session_id} message {n}", "message_id": f"{session_id}-{n}"}
        for attempt in range(200):
            url = fleet.urls[(n + attempt) % 2]
            try:
                async with web.post(f"{url}/api/chat", json=body) as response:
                    statuses.append(response.status)
                    if response.status == 200:
                        return
                    assert response.status == 409, await response.text()  # still being answered: ask again
            except aiohttp.ClientConnectionError:
                pass  # that process is restarting
            await asyncio.sleep(0.05)
        raise AssertionError(f"{session_id} message {n} was never answered")

    async def converse(session_id: str) -> None:
        while not restarted.is_set() or sent[session_id] < 3:  # keep the load on through both restarts
            await send(session_id, sent[session_id])
            sent[session_id] += 1

    try:
        load = asyncio.gather(*(converse(s) for s in sessions))
        await asyncio.sleep(0.5)
        await fleet.restart(0)
        await fleet.restart(1)
        restarted.set()
        await load
        assert statuses and max(statuses) < 500
        assert sum(sent.values()) > 100, "the load ran through both restarts"
        store = RedisStore.from_url(redis_url)
        try:
            for session_id in sessions:
                record = await store.get(SessionKey("web", None, session_id, None, session_id))
                assert record is not None
                users = [m.content for m in record.messages if m.role == "user"]
                assert users == [f"{session_id} message {n}" for n in range(sent[session_id])]
                assert len(record.messages) == 2 * sent[session_id]
        finally:
            await store.aclose()
    finally:
        await web.close()
        await stop_fleet(fleet)
