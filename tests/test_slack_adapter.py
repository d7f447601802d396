"""The Slack adapter through the real slack-bolt and slack_sdk, against a local fake Slack and signed requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.signature import SignatureVerifier

from adapters.slack import SlackAdapter
from adapters.slack.translate import split_message, to_mrkdwn
from adapters.web import create_app
from bot.core import SupportBot
from bot.memory.memory import MemoryStore
from bot.session import Scope
from tests.fakes.models import RecordingModel
from tests.fakes.slack_server import FakeSlack
from tests.helpers import make_bot, settings_for

SECRET = "signing-secret-for-tests"
CHANNEL = "C0HELP"


@dataclass
class Harness:
    fake: FakeSlack
    http: TestClient
    bot: SupportBot
    model: RecordingModel
    store: MemoryStore
    adapter: SlackAdapter

    async def post(
        self,
        body: str,
        *,
        content_type: str = "application/json",
        secret: str = SECRET,
        timestamp: int | None = None,
        retry: int | None = None,
    ) -> Any:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
        }
        if retry is not None:
            headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
        return await self.http.post("/slack/events", data=body.encode(), headers=headers)

    async def event(self, event: dict[str, Any], *, event_id: str | None = None, retry: int | None = None) -> Any:
        payload = self.fake.event_payload(event, event_id=event_id)
        response = await self.post(json.dumps(payload), retry=retry)
        assert response.status == 200, await response.text()
        return response

    async def settle(self) -> None:
        """Wait until every reply task of the adapter has finished (a hang is caught by the per-test timeout)."""
        while not await self.adapter.idle() or self.bot.in_flight:
            await asyncio.sleep(0.01)


def mention(text: str, *, ts: str, user: str = "U1", thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": CHANNEL}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def thread_message(text: str, *, ts: str, thread_ts: str, user: str = "U1") -> dict[str, Any]:
    return {
        "type": "message",
        "channel_type": "channel",
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "channel": CHANNEL,
    }


async def make_harness(fake: FakeSlack, *, scope: Scope = Scope.THREAD_USER, delay: float = 0.0, **env: str) -> Harness:
    settings = settings_for(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=fake.api_url, **env)
    store, model = MemoryStore(), RecordingModel(delay=delay)
    bot = make_bot(store, model, scope=scope)
    adapter = SlackAdapter(settings=settings)
    app = create_app(bot, settings)
    for method, path, handler in adapter.http_routes():
        app.router.add_route(method, path, handler)
    await adapter.start(bot)
    http = TestClient(TestServer(app))
    await http.start_server()
    return Harness(fake, http, bot, model, store, adapter)


async def close(h: Harness, *, grace: float = 5.0) -> None:
    await h.bot.aclose(grace=grace)
    await h.adapter.aclose()
    await h.http.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
async def h(fake: FakeSlack) -> AsyncIterator[Harness]:
    harness = await make_harness(fake)
    yield harness
    await close(harness)


def thread_text(fake: FakeSlack, thread_ts: str) -> list[str]:
    return [m["text"] for m in fake.messages(CHANNEL) if m.get("thread_ts") == thread_ts and m.get("bot_id")]


async def test_a_top_level_mention_is_answered_in_a_new_thread_by_streaming(h: Harness) -> None:
    await h.event(mention("my VPN is not working", ts="1700000000.000100"))
    await h.settle()
    start = h.fake.calls_to("chat.startStream")
    assert len(start) == 1 and start[0].args["thread_ts"] == "1700000000.000100"
    assert start[0].args["recipient_user_id"] == "U1" and start[0].args["recipient_team_id"] == "T1"
    assert thread_text(h.fake, "1700000000.000100") == ["reply to my VPN is not working "]
    assert [m.text for m in h.model.prompts[0][1:]] == ["my VPN is not working"], "the mention is stripped"


async def test_a_follow_up_in_the_thread_needs_no_mention(h: Harness) -> None:
    await h.event(mention("printer jammed", ts="1700000000.000100"))
    await h.settle()
    await h.event(thread_message("still jammed", ts="1700000000.000200", thread_ts="1700000000.000100"))
    await h.settle()
    assert [m.text for m in h.model.prompts[1][1:]] == ["printer jammed", "reply to printer jammed ", "still jammed"]
    assert len(thread_text(h.fake, "1700000000.000100")) == 2


async def test_chatter_in_threads_without_the_bot_is_ignored(h: Harness) -> None:
    h.fake.add_message(CHANNEL, "lunch?", ts="1700000000.000300")
    await h.event(thread_message("pizza", ts="1700000000.000400", thread_ts="1700000000.000300"))
    await h.settle()
    assert h.model.prompts == [] and not h.fake.calls_to("chat.startStream")
    assert h.fake.calls_to("conversations.replies"), "the adapter asked Slack whether it is in the thread"


@pytest.mark.parametrize(("scope", "bob_sees_alice"), [(Scope.THREAD_USER, False), (Scope.THREAD, True)])
async def test_two_users_in_one_thread_follow_the_scope(fake: FakeSlack, scope: Scope, bob_sees_alice: bool) -> None:
    h = await make_harness(fake, scope=scope)
    try:
        await h.event(mention("alice: wifi drops", ts="1700000000.000100", user="UALICE"))
        await h.settle()
        await h.event(
            thread_message("bob: mine too", ts="1700000000.000200", thread_ts="1700000000.000100", user="UBOB")
        )
        await h.settle()
        seen_by_bob = [m.text for m in h.model.prompts[1]]
        assert ("alice: wifi drops" in seen_by_bob) is bob_sees_alice
    finally:
        await close(h)


async def test_a_direct_message_is_answered_in_the_dm(h: Harness) -> None:
    dm = {"type": "message", "channel_type": "im", "user": "U1", "text": "reset my MFA", "ts": "1.1", "channel": "D1"}
    await h.event(dm)
    await h.settle()
    posted = h.fake.calls_to("chat.postMessage")
    assert len(posted) == 1 and posted[0].args["channel"] == "D1" and "thread_ts" not in posted[0].args
    assert [m["text"] for m in h.fake.messages("D1") if m.get("bot_id")] == ["reply to reset my MFA "]


async def test_retries_and_the_twin_message_event_get_one_reply(h: Harness) -> None:
    event = mention("outlook is broken", ts="1700000000.000500")
    twin = thread_message("<@UBOT> outlook is broken", ts="1700000000.000500", thread_ts="")
    await asyncio.gather(
        h.event(event, event_id="Ev1"),
        *(h.event(event, event_id="Ev1", retry=n) for n in (1, 2, 3)),
        h.event({**twin, "thread_ts": None}, event_id="Ev2"),
    )
    await h.settle()
    assert len(h.model.prompts) == 1
    assert len(h.fake.calls_to("chat.startStream")) == 1


async def test_bad_signature_and_stale_timestamp_are_401_and_store_nothing(h: Harness) -> None:
    body = json.dumps(h.fake.event_payload(mention("hi", ts="1.2")))
    assert (await h.post(body, secret="wrong")).status == 401
    assert (await h.post(body, timestamp=int(time.time()) - 3600)).status == 401
    await h.settle()
    assert h.model.prompts == [] and await h.store.list_sessions() == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("{not json", "application/json"), ("payload=%7Bbroken", "application/x-www-form-urlencoded"), ("", "text/plain")],
)
async def test_malformed_bodies_get_a_4xx(h: Harness, body: str, content_type: str) -> None:
    response = await h.post(body, content_type=content_type)
    assert 400 <= response.status < 500


async def test_url_verification_is_answered(h: Harness) -> None:
    response = await h.post(json.dumps({"type": "url_verification", "challenge": "abc123", "token": "t"}))
    assert response.status == 200 and "abc123" in await response.text()


async def test_the_ack_does_not_wait_for_the_model(fake: FakeSlack) -> None:
    h = await make_harness(fake)
    h.model.gate = asyncio.Event()  # the model does not answer until the test ends
    try:
        await h.event(mention("slow question", ts="1700000000.000600"))  # acknowledged with 200
        assert not h.model.gate.is_set() and not await h.adapter.idle(), "acknowledged while the answer is coming"
    finally:
        await close(h, grace=0)


async def test_a_slow_reply_streams_in_order_across_appends(h: Harness) -> None:
    h.model.chunk_delay = 0.06
    question = " ".join(f"word{i}" for i in range(30))
    await h.event(mention(question, ts="1700000000.000650"))
    await h.settle()
    start = h.fake.calls_to("chat.startStream")
    appends = h.fake.calls_to("chat.appendStream")
    stop = h.fake.calls_to("chat.stopStream")
    assert len(start) == 1 and len(appends) >= 2 and len(stop) == 1
    pieces = [start[0].args["markdown_text"], *(a.args["markdown_text"] for a in appends)]
    pieces.append(stop[0].args.get("markdown_text") or "")
    assert "".join(pieces) == f"reply to {question} "
    assert thread_text(h.fake, "1700000000.000650") == [f"reply to {question} "]


async def test_without_streaming_the_reply_is_posted_then_updated(fake: FakeSlack) -> None:
    fake.disable_streaming()
    h = await make_harness(fake)
    try:
        await h.event(mention("long answer please", ts="1700000000.000700"))
        await h.settle()
        assert fake.calls_to("chat.startStream") and fake.calls_to("chat.postMessage")
        assert thread_text(fake, "1700000000.000700")[-1].startswith("reply to long answer please")
    finally:
        await close(h)


async def test_reset_command_in_a_thread_and_the_slash_command_clear_memory(h: Harness) -> None:
    await h.event(mention("vpn", ts="1700000000.000800"))
    await h.settle()
    assert len(await h.store.list_sessions()) == 1
    await h.event(mention("reset", ts="1700000000.000900", thread_ts="1700000000.000800"))
    await h.settle()
    assert await h.store.list_sessions() == []
    assert any("forgotten" in c.args.get("text", "") for c in h.fake.calls_to("chat.postMessage"))

    dm = {"type": "message", "channel_type": "im", "user": "U1", "text": "hello", "ts": "2.1", "channel": "D1"}
    await h.event(dm)
    await h.settle()
    assert len(await h.store.list_sessions()) == 1
    form = urlencode(
        {"command": "/helpdesk", "text": "reset", "user_id": "U1", "channel_id": "D1", "team_id": "T1",
         "trigger_id": "tr1", "response_url": f"{h.fake.api_url}response"}
    )  # fmt: skip
    response = await h.post(form, content_type="application/x-www-form-urlencoded")
    assert response.status == 200
    await h.settle()
    assert await h.store.list_sessions() == []
    assert h.fake.calls_to("chat.postEphemeral")


async def test_export_is_shown_only_to_the_asker(h: Harness) -> None:
    await h.event(mention("printer offline", ts="1700000000.001000"))
    await h.settle()
    await h.event(mention("export", ts="1700000000.001100", thread_ts="1700000000.001000"))
    await h.settle()
    ephemeral = h.fake.calls_to("chat.postEphemeral")
    assert len(ephemeral) == 1 and ephemeral[0].args["user"] == "U1"
    assert "printer offline" in ephemeral[0].args["text"]


async def test_a_ratelimited_slack_call_is_retried_after_retry_after(h: Harness) -> None:
    h.fake.fail_next("chat.startStream", "ratelimited", retry_after=1)
    await h.event(mention("retry me", ts="1700000000.001200"))
    await h.settle()
    starts = h.fake.calls_to("chat.startStream")
    assert len(starts) == 2 and starts[1].at - starts[0].at >= 1.0
    assert thread_text(h.fake, "1700000000.001200")


async def test_a_slack_error_is_logged_and_the_turn_stays_stored(h: Harness) -> None:
    h.fake.fail_next("chat.startStream", "channel_not_found")
    await h.event(mention("anyone there?", ts="1700000000.001300"))
    await h.settle()
    sessions = await h.store.list_sessions()
    assert len(sessions) == 1 and sessions[0].meta.turns == 1


async def test_bots_edits_and_joins_are_ignored(h: Harness) -> None:
    base = {"type": "message", "channel_type": "im", "channel": "D1", "ts": "3.1", "text": "hi"}
    for event in (
        {**base, "bot_id": "B2", "user": "U9"},
        {**base, "user": "UBOT"},
        {**base, "user": "U1", "subtype": "message_changed"},
        {**base, "user": "U1", "subtype": "channel_join"},
        {**base, "user": "U1", "subtype": "message_deleted"},
    ):
        await h.event(event)
    await h.settle()
    assert h.model.prompts == []


async def test_assistant_threads_greet_and_answer_with_a_status(h: Harness) -> None:
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "context": {}, "channel_id": "D7", "thread_ts": "5.1"},
        "event_ts": "5.2",
        "channel": "D7",
    }
    await h.event(started)
    await h.settle()
    assert h.fake.calls_to("assistant.threads.setSuggestedPrompts")
    user_message = {
        "type": "message", "channel_type": "im", "channel": "D7", "user": "U1", "text": "wifi is slow",
        "ts": "5.3", "thread_ts": "5.1",
    }  # fmt: skip
    await h.event(user_message)
    await h.settle()
    statuses = h.fake.calls_to("assistant.threads.setStatus")
    assert statuses and statuses[0].args["status"] == "is thinking…"
    assert [m.text for m in h.model.prompts[-1][1:]] == ["wifi is slow"]


async def test_socket_mode_answers_a_mention(fake: FakeSlack) -> None:
    settings = settings_for(SLACK_BOT_TOKEN="xoxb-test", SLACK_APP_TOKEN="xapp-test", SLACK_API_URL=fake.api_url)
    assert SlackAdapter.enabled(settings) == (True, "slack: on (Socket Mode)")
    model = RecordingModel()
    bot = make_bot(MemoryStore(), model)
    adapter = SlackAdapter(settings=settings)
    assert adapter.http_routes() == []
    await adapter.start(bot)
    try:
        await asyncio.wait_for(fake.socket_connected.wait(), 5)
        ack = await fake.push_event(fake.event_payload(mention("hello over socket", ts="1700000000.002000")))
        assert ack is not None
        await fake.wait_for("chat.startStream")
    finally:
        await bot.aclose()
        await adapter.aclose()
    assert [m.text for m in model.prompts[0][1:]] == ["hello over socket"]


def test_enabled_banner_names_what_turns_slack_on() -> None:
    on, line = SlackAdapter.enabled(settings_for())
    assert not on and "SLACK_BOT_TOKEN" in line
    on, line = SlackAdapter.enabled(settings_for(SLACK_BOT_TOKEN="x", SLACK_SIGNING_SECRET="y"))
    assert on and "POST /slack/events" in line


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic*", "*bold* and _italic_"),
        ("see [the portal](https://help.example.test/a?b=1)", "see <https://help.example.test/a?b=1|the portal>"),
        ("## Steps", "*Steps*"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("```\n**not bold** <tag>\n```", "```\n**not bold** &lt;tag&gt;\n```"),
        ("~~old~~", "~old~"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_long_replies_split_on_paragraphs_within_the_limit() -> None:
    text = "\n\n".join(f"paragraph {i} " + "word " * 150 for i in range(12))
    parts = split_message(text, limit=1_000)
    assert all(len(p) <= 1_000 for p in parts) and len(parts) > 8
    assert all(p.startswith("paragraph") or p.startswith("word") for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())
    assert split_message("x" * 2_500, limit=1_000) == ["x" * 1_000, "x" * 1_000, "x" * 500]
