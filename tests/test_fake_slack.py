"""Tests for the fake Slack server, driven by the real ``slack_sdk`` and ``slack_bolt`` clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.say.async_say import AsyncSay
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import FakeSlack

GUARD_S = 60.0  # a guard against a hang, far above any wait on a busy machine
CHANNEL = "C123"
USER = "U42"
MENTION_TS = "1700000000.000100"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    # No session: slack_sdk opens and closes one aiohttp session per call, so nothing is left to close.
    return AsyncWebClient(token="xoxb-test", base_url=fake.api_url)


def mention_event(text: str = "<@UBOT> hi", ts: str = MENTION_TS) -> dict[str, Any]:
    return {"type": "app_mention", "user": USER, "text": text, "channel": CHANNEL, "ts": ts, "event_ts": ts}


# ---------------------------------------------------------------- Web API


async def test_api_url_has_slack_sdk_base_url_format(fake: FakeSlack) -> None:
    assert fake.api_url.startswith("http://127.0.0.1:")
    assert fake.api_url.endswith("/api/")
    assert fake.socket_url == fake.api_url.replace("http://", "ws://").replace("/api/", "/socket")


async def test_api_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeSlack().api_url
    await FakeSlack().aclose()  # closing a never-started fake is fine


async def test_auth_test(fake: FakeSlack, client: AsyncWebClient) -> None:
    response = await client.auth_test()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.data == {
        "ok": True,
        "url": "https://fake.slack.test/",
        "team": "Fake",
        "user": "supportbot",
        "team_id": "T1",
        "user_id": "UBOT",
        "bot_id": "BBOT",
        "is_enterprise_install": False,
    }
    [call] = fake.calls
    assert call.method == "auth.test"
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert call.token == "xoxb-test"


async def test_constructor_ids_are_used() -> None:
    async with FakeSlack(bot_user_id="UOTHER", team_id="T9", bot_token="xoxb-other") as other:
        response = await AsyncWebClient(token="xoxb-other", base_url=other.api_url).auth_test()
    assert (response["user_id"], response["team_id"]) == ("UOTHER", "T9")


@pytest.mark.parametrize(
    ("token", "error"),
    [("xoxb-wrong", "invalid_auth"), ("xapp-test", "not_allowed_token_type"), (None, "not_authed")],
)
async def test_bad_tokens_are_rejected(fake: FakeSlack, token: str | None, error: str) -> None:
    with pytest.raises(SlackApiError) as info:
        await AsyncWebClient(token=token, base_url=fake.api_url).chat_postMessage(channel=CHANNEL, text="x")
    assert info.value.response["error"] == error
    assert fake.messages(CHANNEL) == []
    assert len(fake.calls_to("chat.postMessage")) == 1  # still recorded


async def test_post_then_update(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel=CHANNEL, text="Looking into it…", thread_ts=MENTION_TS)
    second = await client.chat_postMessage(channel=CHANNEL, text="top level")
    assert first["ok"] is True
    assert first["channel"] == CHANNEL
    assert first["message"]["text"] == "Looking into it…"
    assert first["message"]["thread_ts"] == MENTION_TS
    assert float(second["ts"]) > float(first["ts"])
    seconds, _, micros = first["ts"].partition(".")
    assert seconds.isdigit() and len(micros) == 6

    updated = await client.chat_update(channel=CHANNEL, ts=first["ts"], text="Fixed: restart the VPN client.")
    assert (updated["channel"], updated["ts"], updated["text"]) == (
        CHANNEL,
        first["ts"],
        "Fixed: restart the VPN client.",
    )

    messages = fake.messages(CHANNEL)
    assert [(m["ts"], m["thread_ts"], m["text"]) for m in messages] == [
        (first["ts"], MENTION_TS, "Fixed: restart the VPN client."),
        (second["ts"], None, "top level"),
    ]
    assert messages[0]["user"] == "UBOT" and "edited" in messages[0]
    # chat.postMessage/chat.update are sent as JSON by slack_sdk 3.47; the fake parsed the bodies.
    [post, _] = fake.calls_to("chat.postMessage")
    assert post.headers["content-type"].startswith("application/json")
    assert post.args == {"channel": CHANNEL, "text": "Looking into it…", "thread_ts": MENTION_TS}


async def test_update_unknown_message(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as info:
        await client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert info.value.response["error"] == "message_not_found"


async def test_post_message_validation(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)
    assert info.value.response["error"] == "msg_too_long"
    await client.chat_postMessage(channel=CHANNEL, text="x" * 40_000)
    with pytest.raises(SlackApiError) as info:
        # api_call directly: chat_postMessage() itself warns about a missing `text`.
        await client.api_call("chat.postMessage", json={"channel": CHANNEL})
    assert info.value.response["error"] == "no_text"


async def test_form_encoded_bodies_are_parsed(fake: FakeSlack, client: AsyncWebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    response = await client.api_call(
        "chat.postMessage", data={"channel": CHANNEL, "text": "hi", "blocks": json.dumps(blocks)}
    )
    assert response["ok"] is True
    [call] = fake.calls_to("chat.postMessage")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.args == {"channel": CHANNEL, "text": "hi", "blocks": blocks}
    assert fake.messages(CHANNEL)[0]["blocks"] == blocks


async def test_ratelimited_raises_without_retry_handler(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel=CHANNEL, text="hello")
    response = info.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response["error"] == "ratelimited"
    assert len(fake.calls_to("chat.postMessage")) == 1
    assert fake.messages(CHANNEL) == []
    # The failure was used up: the next call goes through.
    await client.chat_postMessage(channel=CHANNEL, text="hello")
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["hello"]


async def test_ratelimited_is_retried_by_rate_limit_handler(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    response = await client.chat_postMessage(channel=CHANNEL, text="hello")
    assert response["ok"] is True
    first, second = fake.calls_to("chat.postMessage")
    assert second.at - first.at >= 1.0
    assert second.args == first.args
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["hello"]


async def test_fail_next_other_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", "channel_not_found", times=2)
    fake.fail_next("chat.update", "internal_error", status=500)
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            await client.chat_postMessage(channel=CHANNEL, text="hello")
        assert info.value.response["error"] == "channel_not_found"
        assert info.value.response.status_code == 200
    posted = await client.chat_postMessage(channel=CHANNEL, text="hello")
    with pytest.raises(SlackApiError) as info:
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="x")
    assert info.value.response.status_code == 500
    assert "Retry-After" not in info.value.response.headers
    with pytest.raises(ValueError):
        fake.fail_next("chat.update", "x", times=0)


async def test_history_and_replies(fake: FakeSlack, client: AsyncWebClient) -> None:
    parent = fake.add_message(CHANNEL, "my VPN is down", user=USER, ts=MENTION_TS)
    reply = await client.chat_postMessage(channel=CHANNEL, text="Try reconnecting.", thread_ts=MENTION_TS)
    other = await client.chat_postMessage(channel=CHANNEL, text="unrelated")

    history = await client.conversations_history(channel=CHANNEL)
    assert [m["ts"] for m in history["messages"]] == [other["ts"], parent["ts"]]  # newest first
    assert history["has_more"] is False
    assert "thread_ts" not in history["messages"][0]

    replies = await client.conversations_replies(channel=CHANNEL, ts=MENTION_TS)
    assert [(m["ts"], m["text"]) for m in replies["messages"]] == [
        (MENTION_TS, "my VPN is down"),
        (reply["ts"], "Try reconnecting."),
    ]
    assert replies["messages"][0]["user"] == USER
    assert fake.calls_to("conversations.replies")[0].args == {"channel": CHANNEL, "ts": MENTION_TS}  # query string

    limited = await client.conversations_history(channel=CHANNEL, limit=1)
    assert len(limited["messages"]) == 1 and limited["has_more"] is True
    with pytest.raises(SlackApiError) as info:
        await client.conversations_replies(channel=CHANNEL, ts="1.000001")
    assert info.value.response["error"] == "thread_not_found"


async def test_misc_methods(fake: FakeSlack, client: AsyncWebClient) -> None:
    user = await client.users_info(user=USER)
    assert user["user"]["id"] == USER and user["user"]["is_bot"] is False
    assert user["user"]["profile"]["display_name"]
    ephemeral = await client.chat_postEphemeral(channel=CHANNEL, user=USER, text="only you")
    assert ephemeral["message_ts"]
    assert fake.messages(CHANNEL) == []
    view = await client.views_open(
        trigger_id="123.456", view={"type": "modal", "title": {"type": "plain_text", "text": "t"}}
    )
    assert view["view"]["id"].startswith("V")
    await client.reactions_add(channel=CHANNEL, timestamp=MENTION_TS, name="eyes")
    await client.assistant_threads_setStatus(channel_id=CHANNEL, thread_ts=MENTION_TS, status="is thinking…")
    await client.assistant_threads_setSuggestedPrompts(
        channel_id=CHANNEL, thread_ts=MENTION_TS, prompts=[{"title": "Reset", "message": "Reset my password"}]
    )
    await client.assistant_threads_setTitle(channel_id=CHANNEL, thread_ts=MENTION_TS, title="VPN")
    unknown = await client.api_call("admin.something.new", json={"x": 1})
    assert unknown.data == {"ok": True}
    assert [c.method for c in fake.calls] == [
        "users.info",
        "chat.postEphemeral",
        "views.open",
        "reactions.add",
        "assistant.threads.setStatus",
        "assistant.threads.setSuggestedPrompts",
        "assistant.threads.setTitle",
        "admin.something.new",
    ]
    assert fake.calls_to("assistant.threads.setStatus")[0].args["status"] == "is thinking…"
    assert fake.calls_to("admin.something.new")[0].args == {"x": 1}


async def test_wait_for(fake: FakeSlack, client: AsyncWebClient) -> None:
    waiter = asyncio.create_task(fake.wait_for("chat.postMessage", count=2, timeout=GUARD_S))
    await client.chat_postMessage(channel=CHANNEL, text="one")
    await asyncio.sleep(0)
    assert not waiter.done()
    await client.chat_postMessage(channel=CHANNEL, text="two")
    calls = await waiter
    assert [c.args["text"] for c in calls] == ["one", "two"]
    with pytest.raises(TimeoutError, match="chat.update"):
        await fake.wait_for("chat.update", timeout=0.05)


# ---------------------------------------------------------------- streaming


async def test_chat_stream_helper_buffered(fake: FakeSlack, client: AsyncWebClient) -> None:
    # With the default 256-char buffer nothing is sent until stop(): then startStream (no text) + stopStream.
    streamer = await client.chat_stream(
        channel=CHANNEL, thread_ts=MENTION_TS, recipient_team_id="T1", recipient_user_id=USER
    )
    for piece in ("**Restart", " the VPN", " client**"):
        assert await streamer.append(markdown_text=piece) is None
    assert fake.calls == []
    await streamer.stop()

    assert [c.method for c in fake.calls] == ["chat.startStream", "chat.stopStream"]
    start, stop = fake.calls
    assert start.args == {
        "channel": CHANNEL,
        "thread_ts": MENTION_TS,
        "recipient_team_id": "T1",
        "recipient_user_id": USER,
    }
    assert stop.args == {
        "channel": CHANNEL,
        "ts": streamer.ts,
        "chunks": [{"type": "markdown_text", "text": "**Restart the VPN client**"}],
    }
    [message] = fake.messages(CHANNEL)
    assert (message["ts"], message["thread_ts"], message["text"]) == (
        streamer.ts,
        MENTION_TS,
        "**Restart the VPN client**",
    )
    assert message["streaming"] is False


async def test_chat_stream_helper_flushes_through_append(fake: FakeSlack, client: AsyncWebClient) -> None:
    streamer = await client.chat_stream(channel=CHANNEL, thread_ts=MENTION_TS, buffer_size=5)
    await streamer.append(markdown_text="Hello, ")  # >= 5 chars: startStream carrying the text as a chunk
    await streamer.append(markdown_text="wor")  # buffered
    await streamer.append(markdown_text="ld!")  # flushed with appendStream
    assert fake.messages(CHANNEL)[0]["streaming"] is True
    await streamer.stop(markdown_text=" Bye.", blocks=[{"type": "divider"}])

    assert [c.method for c in fake.calls] == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    start, append, stop = fake.calls
    assert start.args["chunks"] == [{"type": "markdown_text", "text": "Hello, "}]
    assert "markdown_text" not in start.args
    assert append.args == {
        "channel": CHANNEL,
        "ts": streamer.ts,
        "chunks": [{"type": "markdown_text", "text": "world!"}],
    }
    assert stop.args["chunks"] == [{"type": "markdown_text", "text": " Bye."}]
    assert stop.args["blocks"] == [{"type": "divider"}]
    [message] = fake.messages(CHANNEL)
    assert message["text"] == "Hello, world! Bye."
    assert message["blocks"] == [{"type": "divider"}]
    assert message["streaming"] is False


async def test_raw_stream_methods(fake: FakeSlack, client: AsyncWebClient) -> None:
    started = await client.chat_startStream(channel=CHANNEL, thread_ts=MENTION_TS, markdown_text="a")
    assert started["channel"] == CHANNEL and started["ts"]
    await client.chat_appendStream(channel=CHANNEL, ts=started["ts"], markdown_text="b")
    stopped = await client.chat_stopStream(channel=CHANNEL, ts=started["ts"], markdown_text="c")
    assert stopped["message"]["text"] == "abc"
    with pytest.raises(SlackApiError) as info:
        await client.chat_appendStream(channel=CHANNEL, ts=started["ts"], markdown_text="d")
    assert info.value.response["error"] == "message_not_in_streaming_state"
    with pytest.raises(SlackApiError) as info:
        await client.chat_stopStream(channel=CHANNEL, ts="1.000001")
    assert info.value.response["error"] == "message_not_found"
    other = await client.chat_startStream(channel=CHANNEL, thread_ts=MENTION_TS)
    with pytest.raises(SlackApiError) as info:
        await client.chat_appendStream(channel=CHANNEL, ts=other["ts"], markdown_text="x" * 12_001)
    assert info.value.response["error"] == "msg_too_long"
    assert [(m["text"], m["streaming"]) for m in fake.messages(CHANNEL)] == [("abc", False), ("", True)]


async def test_disable_streaming(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.disable_streaming()
    with pytest.raises(SlackApiError) as info:
        await client.chat_startStream(channel=CHANNEL, thread_ts=MENTION_TS, markdown_text="a")
    assert info.value.response["error"] == "unknown_method"
    assert info.value.response.status_code == 200
    streamer = await client.chat_stream(channel=CHANNEL, thread_ts=MENTION_TS)
    await streamer.append(markdown_text="hello")
    with pytest.raises(SlackApiError) as info:
        await streamer.stop()
    assert info.value.response["error"] == "unknown_method"
    assert fake.messages(CHANNEL) == []
    await client.chat_postMessage(channel=CHANNEL, text="fallback", thread_ts=MENTION_TS)  # the fallback still works
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["fallback"]


# ---------------------------------------------------------------- Socket Mode


async def test_push_event_without_client_raises(fake: FakeSlack) -> None:
    with pytest.raises(RuntimeError, match="no Socket Mode client"):
        await fake.push_event(fake.event_payload(mention_event()))


async def test_raw_socket_protocol(fake: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as info:
        await client.apps_connections_open(app_token="xapp-wrong")
    assert info.value.response["error"] == "invalid_auth"
    opened = await client.apps_connections_open(app_token="xapp-test")
    assert opened["url"] == fake.socket_url
    assert fake.calls_to("apps.connections.open")[-1].headers["authorization"] == "Bearer xapp-test"

    async with aiohttp.ClientSession() as session, session.ws_connect(opened["url"]) as ws:
        hello = await ws.receive_json(timeout=GUARD_S)
        assert hello["type"] == "hello"
        assert hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": "A1"}
        assert "debug_info" in hello
        await asyncio.wait_for(fake.socket_connected.wait(), GUARD_S)

        # A client that never acks: push_event gives up with None.
        assert await fake.push_event({"x": 1}, envelope_type="slash_commands", timeout=0.05) is None
        envelope = await ws.receive_json(timeout=GUARD_S)
        assert envelope == {
            "envelope_id": fake.envelopes[0]["envelope_id"],
            "type": "slash_commands",
            "payload": {"x": 1},
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }

        async def ack_next() -> None:
            received = await ws.receive_json(timeout=GUARD_S)
            await ws.send_json({"envelope_id": received["envelope_id"], "payload": {"text": "ok"}})

        acker = asyncio.create_task(ack_next())
        ack = await fake.push_event(fake.event_payload(mention_event()), timeout=GUARD_S)
        await acker
        assert ack == {"envelope_id": fake.envelopes[1]["envelope_id"], "payload": {"text": "ok"}}
        assert fake.acks == [ack]
        # The mention's message is now part of the fake's view of the channel.
        assert [(m["ts"], m["user"], m["text"]) for m in fake.messages(CHANNEL)] == [(MENTION_TS, USER, "<@UBOT> hi")]

    for _ in range(100):  # the server notices the disconnect asynchronously
        if not fake.socket_connected.is_set():
            break
        await asyncio.sleep(0.01)
    assert not fake.socket_connected.is_set()


async def test_aclose_closes_open_websockets() -> None:
    fake = FakeSlack()
    await fake.start()
    async with aiohttp.ClientSession() as session, session.ws_connect(fake.socket_url) as ws:
        await ws.receive_json(timeout=GUARD_S)
        await asyncio.wait_for(fake.socket_connected.wait(), GUARD_S)
        await asyncio.wait_for(fake.aclose(), GUARD_S)
        message = await ws.receive(timeout=GUARD_S)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    await fake.aclose()  # idempotent


@pytest.fixture
async def bolt_handler(fake: FakeSlack) -> AsyncIterator[AsyncSocketModeHandler]:
    # Pass only `client`: bolt takes the token from it (passing `token=` too just logs a warning).
    app = AsyncApp(client=AsyncWebClient(token="xoxb-test", base_url=fake.api_url))

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: AsyncSay) -> None:
        await say(text="On it!", thread_ts=event["ts"])

    # The handler's SocketModeClient uses app.client (pointed at the fake) for apps.connections.open.
    handler = AsyncSocketModeHandler(app, app_token="xapp-test")
    try:
        yield handler
    finally:
        await handler.close_async()


async def test_bolt_socket_mode_app_mention(fake: FakeSlack, bolt_handler: AsyncSocketModeHandler) -> None:
    await bolt_handler.connect_async()
    await asyncio.wait_for(fake.socket_connected.wait(), GUARD_S)
    assert fake.calls_to("apps.connections.open")[0].token == "xapp-test"

    ack = await fake.push_event(fake.event_payload(mention_event(), event_id="Ev0001"))
    assert ack == {"envelope_id": fake.envelopes[0]["envelope_id"]}

    [post] = await fake.wait_for("chat.postMessage")
    assert post.args["channel"] == CHANNEL
    assert post.args["thread_ts"] == MENTION_TS
    assert post.args["text"] == "On it!"
    assert len(fake.calls_to("auth.test")) == 1  # bolt's single-team authorization, on the first request
    assert [(m["user"], m["thread_ts"], m["text"]) for m in fake.messages(CHANNEL)] == [
        (USER, None, "<@UBOT> hi"),
        ("UBOT", MENTION_TS, "On it!"),
    ]
