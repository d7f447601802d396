"""Abuse limits: a web client is rate-limited as who it is (its token, else its address; X-Forwarded-For only from a
trusted proxy), not by the session_id it picks; tickets and hand-overs have quotas per user and per session; and a
session has one hand-over open at a time, however many times the model calls for one."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from adapters.web import create_app
from bot.app import build_bot
from bot.config import Settings
from bot.core import SupportBot
from tests.fakes.openai_server import FakeOpenAI, ToolCallReply, content_text, last_tool_results
from tests.fakes.webhook_server import FakeTicketWebhook
from tests.helpers import message, settings_for
from tests.test_cli import supportbot

URGENT = {"summary": "Everything is down", "details": "Nothing works at all.", "priority": "urgent"}


def client_for(settings: Settings) -> tuple[SupportBot, TestClient]:
    bot = build_bot(settings)
    return bot, TestClient(TestServer(create_app(bot, settings)))


async def kinds(client: TestClient, count: int, **headers: str) -> list[str]:
    """Send ``count`` messages, each from a new session id, and return the reply kinds."""
    found = []
    for _ in range(count):
        response = await client.post(
            "/api/chat", json={"session_id": uuid.uuid4().hex, "message": "vpn down"}, headers=headers
        )
        assert response.status == 200, await response.text()
        found.append((await response.json())["kind"])
    return found


async def test_new_session_ids_do_not_reset_a_clients_rate_limit() -> None:
    bot, client = client_for(
        settings_for(SUPPORTBOT_MEMORY__STORE_URL="memory://", SUPPORTBOT_RATE_LIMIT__MESSAGES="5")
    )
    async with client:
        answered = await kinds(client, 8)
        # A forged X-Forwarded-For from a client that is not a trusted proxy changes nothing.
        forged = [await kinds(client, 1, **{"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(3)]
    await bot.aclose()
    assert answered == ["answer"] * 5 + ["notice"] * 3
    assert forged == [["notice"]] * 3


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() -> None:
    bot, client = client_for(
        settings_for(
            SUPPORTBOT_MEMORY__STORE_URL="memory://",
            SUPPORTBOT_RATE_LIMIT__MESSAGES="2",
            SUPPORTBOT_WEB__TRUSTED_PROXIES='["127.0.0.0/8"]',
        )
    )
    async with client:
        alice = await kinds(client, 3, **{"X-Forwarded-For": "203.0.113.7"})
        # The left part of the header is the client's to write: only the hop the proxy added counts.
        bob = await kinds(client, 3, **{"X-Forwarded-For": "203.0.113.7, 203.0.113.8"})
    await bot.aclose()
    assert alice == ["answer", "answer", "notice"] and bob == ["answer", "answer", "notice"]


async def test_each_web_token_is_a_client_of_its_own() -> None:
    bot, client = client_for(
        settings_for(
            SUPPORTBOT_MEMORY__STORE_URL="memory://",
            SUPPORTBOT_RATE_LIMIT__MESSAGES="2",
            SUPPORTBOT_WEB_TOKEN="intranet-token-1, kiosk-token-2",
        )
    )
    async with client:
        intranet = await kinds(client, 3, Authorization="Bearer intranet-token-1")
        kiosk = await kinds(client, 3, Authorization="Bearer kiosk-token-2")
        refused = await client.post("/api/chat", json={"session_id": "abcdefgh", "message": "x"})
    await bot.aclose()
    assert intranet == kiosk == ["answer", "answer", "notice"]
    assert refused.status == 401


def always_urgent(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    results = last_tool_results(messages)
    if results:
        return " ".join(content_text(r.get("content")) for r in results)
    return ToolCallReply([("create_ticket", URGENT)])


async def test_a_ticket_flood_stops_at_the_daily_quota(tmp_path: Path) -> None:
    async with FakeOpenAI(responder=always_urgent) as fake, FakeTicketWebhook() as webhook:
        settings = settings_for(
            fake.base_url,
            SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
            SUPPORTBOT_MEMORY__ENTITIES="false",
            SUPPORTBOT_MEMORY__SUMMARY="false",
            SUPPORTBOT_RATE_LIMIT__MESSAGES="0",
            SUPPORTBOT_TICKET_WEBHOOK_URL=webhook.url,
            SUPPORTBOT_QUOTAS__TICKETS_PER_DAY="3",
        )
        bot, client = client_for(settings)
        replies = []
        async with client:
            for _ in range(8):
                sid = uuid.uuid4().hex
                response = await client.post("/api/chat", json={"session_id": sid, "message": "file it, urgent"})
                replies.append((sid, (await response.json())["reply"]))
        refused_audit = await bot.store.audit(
            bot.session_key(
                message(
                    "x", platform="web", channel=replies[-1][0], user=replies[-1][0], workspace=None, is_direct=True
                )
            )
        )
        await bot.aclose()
        await bot.store.aclose()
    assert len(webhook.posts) == 3, "60 urgent tickets in 2.8 s is over"
    assert all("not filed" in reply and "contact the helpdesk directly" in reply for _, reply in replies[3:])
    assert [(e.tool, e.outcome) for e in refused_audit] == [("create_ticket", "refused")]


async def test_a_session_files_at_most_its_quota_of_tickets(tmp_path: Path) -> None:
    async with FakeOpenAI(responder=always_urgent) as fake, FakeTicketWebhook() as webhook:
        settings = settings_for(
            fake.base_url,
            SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
            SUPPORTBOT_MEMORY__ENTITIES="false",
            SUPPORTBOT_MEMORY__SUMMARY="false",
            SUPPORTBOT_TICKET_WEBHOOK_URL=webhook.url,
            SUPPORTBOT_QUOTAS__TICKETS_PER_SESSION="2",
        )
        bot = build_bot(settings)
        for n in range(4):
            await bot.handle(message(f"another ticket {n}", thread="1.0"))
        audit = await bot.store.audit(bot.session_key(message("x", thread="1.0")))
        await bot.aclose()
        await bot.store.aclose()
    assert len(webhook.posts) == 2
    assert [e.outcome for e in audit] == ["ok", "ok", "refused", "refused"]


def escalate_a_hundred_times(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    results = last_tool_results(messages)
    if results:
        return content_text(results[0].get("content"))
    return ToolCallReply([("escalate_to_human", {"reason": f"call {n}"}) for n in range(100)])


async def test_a_hundred_escalations_in_one_reply_post_once_until_resolved(tmp_path: Path) -> None:
    posts: list[str] = []

    async def escalator(text: str) -> str:
        posts.append(text)
        return f"https://slack.example/archives/C0ESC/p{len(posts)}"

    async with FakeOpenAI(responder=escalate_a_hundred_times) as fake:
        settings = settings_for(
            fake.base_url,
            SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
            SUPPORTBOT_MEMORY__ENTITIES="false",
            SUPPORTBOT_MEMORY__SUMMARY="false",
            SUPPORTBOT_QUOTAS__ESCALATIONS_PER_SESSION="2",
            SUPPORTBOT_QUOTAS__ESCALATIONS_PER_DAY="0",
        )
        bot = build_bot(settings)
        assert bot.toolbox is not None
        bot.toolbox.register_escalator("slack", escalator, channel="C0ESC")
        msg = message("I need a human now", thread="1.0")
        key = bot.session_key(msg)
        await bot.handle(msg)
        assert len(posts) == 1, "one hand-over, not a hundred"
        await bot.handle(message("still nobody?", thread="1.0"))
        assert len(posts) == 1, "an open hand-over is not posted again"
        env = {"SUPPORTBOT_CONFIG": "", "SUPPORTBOT_MEMORY__STORE_URL": settings.memory.store_url, "PATH": "/usr/bin"}
        resolved = await asyncio.to_thread(supportbot, env, "sessions", "resolve", key.id)
        assert resolved.returncode == 0, resolved.stderr
        await bot.handle(message("it broke again", thread="1.0"))
        assert len(posts) == 2, "once resolved, the session may be handed over again"
        await asyncio.to_thread(supportbot, env, "sessions", "resolve", key.id)
        third = await bot.handle(message("and again", thread="1.0"))
        audit = await bot.store.audit(key)
        await bot.aclose()
        await bot.store.aclose()
    assert len(posts) == 2 and third is not None and "helpdesk directly" in third.text
    outcomes = [e.outcome for e in audit if e.tool == "escalate_to_human"]
    assert outcomes.count("ok") == 2 and outcomes.count("refused") == 100 and outcomes.count("repeated") == 298
