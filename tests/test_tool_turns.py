"""Tools inside real turns: the model (ChatOpenAI against the fake server) calls them, the toolbox runs them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from adapters import load_adapter
from bot.app import build_bot
from bot.config import Settings
from bot.core import SupportBot
from bot.memory import Entity
from bot.runner import Runner
from tests.fakes.openai_server import FakeOpenAI, ToolCallReply, content_text, last_tool_results
from tests.fakes.slack_server import FakeSlack
from tests.fakes.webhook_server import FakeTicketWebhook
from tests.helpers import message, settings_for, settle
from tests.redis_server import free_port
from tests.test_cli import supportbot

TICKET_ARGS = {"summary": "VPN fails with error 809", "details": "Since this morning, at home.", "priority": "high"}


def last_user_text(messages: list[dict[str, Any]]) -> str:
    return next(content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user")


def ticket_responder(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    """Files a ticket when asked to, then reports the tool's answer; otherwise answers plainly."""
    results = last_tool_results(messages)
    if results:
        return "Done. " + " ".join(content_text(r.get("content")) for r in results)
    if "ticket" in last_user_text(messages):
        return ToolCallReply([("create_ticket", TICKET_ARGS)])
    return "noted"


def tool_settings(fake: FakeOpenAI, tmp_path: Path, **env: str) -> Settings:
    return settings_for(
        fake.base_url,
        SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/sessions.db",
        SUPPORTBOT_MEMORY__ENTITIES="false",
        SUPPORTBOT_MEMORY__SUMMARY="false",
        SUPPORTBOT_MEMORY__RECALL="false",
        **env,
    )


@pytest.fixture
async def webhook() -> AsyncIterator[FakeTicketWebhook]:
    async with FakeTicketWebhook() as server:
        yield server


async def closed(bot: SupportBot) -> None:
    await bot.aclose()
    await bot.store.aclose()


async def test_a_ticket_is_filed_once_with_the_sessions_context_and_audited(
    tmp_path: Path, webhook: FakeTicketWebhook
) -> None:
    async with FakeOpenAI(responder=ticket_responder) as fake:
        settings = tool_settings(
            fake, tmp_path, SUPPORTBOT_TICKET_WEBHOOK_URL=webhook.url, SUPPORTBOT_TICKET_WEBHOOK_TOKEN="tk-secret-1"
        )
        bot = build_bot(settings)
        first = message("My VPN shows error 809 on Windows 11")
        await bot.handle(first)
        key = bot.session_key(first)
        await bot.store.save_entities(key, {"os": Entity("Windows 11", time.time())})
        ask = message("Please open a ticket for this")
        reply = await bot.handle(ask)
        assert reply is not None and "INC-0001" in reply.text, "the user gets the ticket id"
        assert await bot.handle(ask) is None, "a redelivery of the same message files nothing"
        assert bot.metrics.tool_calls.labels("create_ticket", "ok")._value.get() == 1
        await settle(bot)
        await closed(bot)

    (post,) = webhook.posts
    ticket = post.json
    assert ticket["summary"] == TICKET_ARGS["summary"] and ticket["priority"] == "high"
    assert ticket["session_id"] == key.id and ticket["entities"] == {"os": "Windows 11"}
    assert [m["text"] for m in ticket["transcript"]] == [
        "My VPN shows error 809 on Windows 11",
        "noted",
        "Please open a ticket for this",
    ]
    assert post.headers["authorization"] == "Bearer tk-secret-1"
    assert post.headers["idempotency-key"] == f"{key.id}:{ask.event_id}"
    offered = fake.requests[1]
    assert offered.tools == ["search_kb", "create_ticket", "escalate_to_human"]

    env = {"SUPPORTBOT_CONFIG": "", "SUPPORTBOT_MEMORY__STORE_URL": settings.memory.store_url, "PATH": "/usr/bin"}
    shown = supportbot(env, "sessions", "audit", key.id)
    assert shown.returncode == 0, shown.stderr
    assert "create_ticket ok" in shown.stdout and "INC-0001" in shown.stdout
    assert "tk-secret-1" not in shown.stdout
    (line,) = supportbot(env, "sessions", "audit", key.id, "--json").stdout.splitlines()
    entry = json.loads(line)
    assert entry["event_id"] == ask.event_id and entry["arguments"]["summary"] == TICKET_ARGS["summary"]
    assert entry["latency_ms"] > 0


async def test_a_model_that_asks_twice_in_one_turn_still_files_one_ticket(
    tmp_path: Path, webhook: FakeTicketWebhook
) -> None:
    def insistent(messages: list[dict[str, Any]]) -> str | ToolCallReply:
        calls = sum(1 for m in messages if m.get("role") == "tool")
        if calls < 2:
            return ToolCallReply([("create_ticket", TICKET_ARGS)])
        return "Filed: " + content_text(last_tool_results(messages)[0]["content"])

    async with FakeOpenAI(responder=insistent) as fake:
        bot = build_bot(tool_settings(fake, tmp_path, SUPPORTBOT_TICKET_WEBHOOK_URL=webhook.url))
        msg = message("ticket please")
        chunks = [chunk async for chunk in bot.stream(msg)]
        assert "INC-0001" in "".join(chunks)
        audit = await bot.store.audit(bot.session_key(msg))
        await closed(bot)
    assert len(webhook.posts) == 1
    assert [e.outcome for e in audit] == ["ok", "repeated"]


async def test_the_last_round_must_answer_in_words(tmp_path: Path) -> None:
    def searching(messages: list[dict[str, Any]]) -> str | ToolCallReply:
        return ToolCallReply([("search_kb", {"query": "vpn error 809"})], content="Looking… ")

    async with FakeOpenAI(responder=searching) as fake:
        bot = build_bot(tool_settings(fake, tmp_path, SUPPORTBOT_TOOLS__MAX_ROUNDS="2"))
        msg = message("vpn error 809")
        reply = await bot.handle(msg)
        audit = await bot.store.audit(bot.session_key(msg))
        await closed(bot)
    assert [r.tool_choice for r in fake.requests] == [None, None, "none"], "the third call may not use tools"
    assert reply is not None and reply.text.startswith("Looking…")
    assert [e.tool for e in audit] == ["search_kb", "search_kb"]
    assert "VPN" in fake.requests[1].prompt_text() or "vpn" in fake.requests[1].prompt_text().lower()


async def test_without_a_model_no_tools_are_offered(tmp_path: Path) -> None:
    bot = build_bot(settings_for(SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db"))
    assert bot.toolbox is None
    reply = await bot.handle(message("please open a ticket, my VPN fails"))
    assert reply is not None and reply.text
    await closed(bot)


async def test_escalation_posts_the_hand_over_to_the_slack_channel_through_serve(tmp_path: Path) -> None:
    secret, escalations, channel = "signing-secret", "C0ESCALATE", "C0HELP"

    def escalating(messages: list[dict[str, Any]]) -> str | ToolCallReply:
        results = last_tool_results(messages)
        if results:
            return content_text(results[0]["content"])
        if "human" in last_user_text(messages):
            return ToolCallReply([("escalate_to_human", {"reason": "User asks for a person; laptop will not boot"})])
        return "Try holding the power button for 30 seconds."

    async with FakeOpenAI(responder=escalating) as fake, FakeSlack() as slack:
        settings = tool_settings(
            fake,
            tmp_path,
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=secret,
            SLACK_API_URL=slack.api_url,
            SUPPORTBOT_SLACK__ESCALATION_CHANNEL=escalations,
            SUPPORTBOT_SLACK__STREAM="false",
            SUPPORTBOT_SERVER__PORT=str(free_port()),
        )
        said: list[str] = []
        runner = Runner(settings, names=["web", "slack"], load=load_adapter)
        await runner.start(say=said.append)
        assert f"escalations from slack go to channel {escalations}" in said
        url = f"http://127.0.0.1:{settings.server.port}/slack/events"
        try:
            async with aiohttp.ClientSession() as http:
                for n, text in enumerate(["my laptop will not boot", "I want a human please"]):
                    event = {
                        "type": "app_mention",
                        "user": "U1",
                        "text": f"<@UBOT> {text}",
                        "ts": f"1700000000.00010{n}",
                        "thread_ts": "1700000000.000100",
                        "channel": channel,
                    }
                    body = json.dumps(slack.event_payload(event))
                    ts = str(int(time.time()))
                    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
                    headers = {
                        "Content-Type": "application/json",
                        "X-Slack-Request-Timestamp": ts,
                        "X-Slack-Signature": signature,
                    }
                    async with http.post(url, data=body, headers=headers) as response:
                        assert response.status == 200
                    assert runner.bot is not None
                    assert runner.inbox is not None
                    while runner.bot.in_flight or (await runner.inbox.stats()).depth:
                        await asyncio.sleep(0.02)
        finally:
            await runner.aclose()

    (handover,) = slack.messages(escalations)
    assert "laptop will not boot" in handover["text"] and "User asks for a person" in handover["text"]
    in_thread = [m["text"] for m in slack.messages(channel) if m.get("bot_id")]
    assert any("follow up" in text for text in in_thread), "the user is told a person will follow up"
