"""A ticket never carries a web session id, which is a bearer capability (whoever holds it reads and writes the tab's
conversation): its session_id, user and Idempotency-Key hold an opaque reference instead."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from adapters.web import create_app
from bot.app import build_bot
from bot.session import SessionKey, public_reference
from tests.fakes.openai_server import FakeOpenAI, ToolCallReply, content_text, last_tool_results
from tests.fakes.webhook_server import FakeTicketWebhook
from tests.helpers import settings_for


def ticket_please(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    results = last_tool_results(messages)
    if results:
        return content_text(results[0].get("content"))
    return ToolCallReply([("create_ticket", {"summary": "Printer jam", "details": "Tray 2 jams.", "priority": "low"})])


async def test_web_tickets_name_the_session_by_an_opaque_reference(tmp_path: Path) -> None:
    sessions = [str(uuid.uuid4()), str(uuid.uuid4())]
    async with FakeOpenAI(responder=ticket_please) as fake, FakeTicketWebhook() as webhook:
        settings = settings_for(
            fake.base_url,
            SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
            SUPPORTBOT_MEMORY__ENTITIES="false",
            SUPPORTBOT_TICKET_WEBHOOK_URL=webhook.url,
        )
        bot = build_bot(settings)
        async with TestClient(TestServer(create_app(bot, settings))) as client:
            for sid in (sessions[0], sessions[0], sessions[1]):
                response = await client.post("/api/chat", json={"session_id": sid, "message": "printer jam"})
                assert response.status == 200
        await bot.aclose()
        await bot.store.aclose()
    assert len(webhook.posts) == 3
    keys = [SessionKey("web", None, sid, None, sid) for sid in sessions]
    for post in webhook.posts:
        sent = json.dumps(post.json) + json.dumps(post.headers)
        for sid, key in zip(sessions, keys, strict=True):
            assert sid not in sent and key.id not in sent and sid.replace("-", "%2D") not in sent
    references = [post.json["session_id"] for post in webhook.posts]
    assert references == [public_reference(keys[0])] * 2 + [public_reference(keys[1])]
    assert all(post.json["user"] == post.json["session_id"] for post in webhook.posts)
    assert all(post.headers["idempotency-key"].startswith(post.json["session_id"] + ":") for post in webhook.posts)


def test_only_web_sessions_are_hidden() -> None:
    slack = SessionKey("slack", "T1", "C1", "1.0", "U1")
    assert public_reference(slack) == slack.id, "a person following up needs the Slack thread"
    web = SessionKey("web", None, "abcdefgh", None, "abcdefgh")
    assert public_reference(web).startswith("web:") and "abcdefgh" not in public_reference(web)
