"""Unsigned or garbled requests to ``POST /slack/events`` get 401 or 400, never a 500, and log no traceback."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.signature import SignatureVerifier

from adapters.slack import SlackAdapter
from adapters.web import create_app
from bot.app import build_bot
from tests.fakes.slack_server import FakeSlack
from tests.helpers import settings_for

SECRET = "events-signing-secret"
NOW = "<a current timestamp>"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with FakeSlack() as fake:
        settings = settings_for(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=fake.api_url,
            SUPPORTBOT_MEMORY__STORE_URL="memory://",
        )
        bot = build_bot(settings)
        adapter = SlackAdapter(settings=settings)
        app = create_app(bot, settings)
        for method, path, handler in adapter.http_routes():
            app.router.add_route(method, path, handler)
        await adapter.start(bot)
        async with TestClient(TestServer(app)) as test_client:
            yield test_client
        await bot.aclose()
        await adapter.aclose()


def fresh() -> str:
    return str(int(time.time()))


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param(b"{}", {}, 401, id="curl -d '{}', no Slack headers"),
        pytest.param(b"{}", {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, 401, id="word"),
        pytest.param(b"{}", {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": "v0=00"}, 401, id="empty ts"),
        pytest.param(b"{}", {"X-Slack-Request-Timestamp": "１７", "X-Slack-Signature": "v0=00"}, 401, id="wide digits"),
        pytest.param(b"{}", {"X-Slack-Request-Timestamp": "1e9", "X-Slack-Signature": "v0=00"}, 401, id="float"),
        pytest.param(
            b'{"type": "\xff\xfe"}',
            {"X-Slack-Request-Timestamp": NOW, "X-Slack-Signature": "v0=00"},
            400,
            id="not UTF-8, numeric ts",
        ),
        pytest.param(
            b"\xc3\x28",
            {"X-Slack-Request-Timestamp": NOW, "X-Slack-Signature": "v0=00"},
            400,
            id="broken UTF-8, numeric ts",
        ),
        pytest.param(
            b"{}", {"X-Slack-Request-Timestamp": NOW, "X-Slack-Signature": "v0=00"}, 401, id="wrong signature"
        ),
        pytest.param(b"{}", {"X-Slack-Request-Timestamp": "0", "X-Slack-Signature": "v0=00"}, 401, id="stale"),
    ],
)
async def test_unsigned_and_malformed_requests_are_refused_without_a_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture, body: bytes, headers: dict[str, str], status: int
) -> None:
    headers = {"Content-Type": "application/json"} | {k: fresh() if v is NOW else v for k, v in headers.items()}
    with caplog.at_level(logging.DEBUG):
        response = await client.post("/slack/events", data=body, headers=headers)
    assert response.status == status, await response.text()
    assert "error" in await response.json()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_a_signed_request_still_gets_through(client: TestClient) -> None:
    body = '{"type": "url_verification", "challenge": "c-123"}'
    ts = fresh()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body),
    }
    response = await client.post("/slack/events", data=body, headers=headers)
    assert response.status == 200 and "c-123" in await response.text()
