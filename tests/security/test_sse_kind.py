"""The SSE ``done`` event carries the turn's real kind, as the JSON response does: a fallback or a notice is never
labelled an answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.web import create_app
from bot.app import build_bot
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import settings_for

SID = "5e7a4c1d-9b2f-4e61-8a3c-0d1e2f3a4b5c"


@pytest.fixture
async def served(fake_openai: FakeOpenAI) -> AsyncIterator[TestClient]:
    settings = settings_for(
        fake_openai.base_url,
        SUPPORTBOT_MEMORY__STORE_URL="memory://",
        SUPPORTBOT_MEMORY__ENTITIES="false",
        SUPPORTBOT_MEMORY__SUMMARY="false",
        SUPPORTBOT_RATE_LIMIT__MESSAGES="2",
    )
    bot = build_bot(settings)
    async with TestClient(TestServer(create_app(bot, settings))) as client:
        yield client
    await bot.aclose()


async def done_kind(client: TestClient, message: str) -> str:
    response = await client.post(
        "/api/chat", json={"session_id": SID, "message": message}, headers={"Accept": "text/event-stream"}
    )
    assert response.status == 200
    blocks = [b for b in (await response.text()).split("\n\n") if b]
    event, data = blocks[-1].split("\n", 1)
    assert event == "event: done"
    kind: str = json.loads(data.removeprefix("data: "))["kind"]
    return kind


async def json_kind(client: TestClient, message: str) -> str:
    response = await client.post("/api/chat", json={"session_id": SID, "message": message})
    kind: str = (await response.json())["kind"]
    return kind


async def test_done_says_fallback_when_the_model_fails(served: TestClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next("500")
    assert await done_kind(served, "vpn down") == "fallback"
    assert await done_kind(served, "still down") == "answer"


async def test_done_says_notice_when_rate_limited_like_the_json_response(served: TestClient) -> None:
    assert await done_kind(served, "one") == "answer"
    assert await json_kind(served, "two") == "answer"
    assert await json_kind(served, "three") == "notice"
    assert await done_kind(served, "four") == "notice"
