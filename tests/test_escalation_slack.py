"""Escalations through the Slack adapter: the real slack_sdk client against the local fake Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.slack import SlackAdapter
from adapters.slack.translate import MESSAGE_CHARS, split_message, to_inert_text
from bot.adapter import Escalates
from bot.errors import EscalationFailed
from tests.fakes.slack_server import FakeSlack
from tests.helpers import settings_for

TOKEN = "xoxb-test"
ESCALATIONS = "C0ESCALATE"


def adapter_for(api_url: str, *, channel: str | None = ESCALATIONS) -> SlackAdapter:
    env = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": "secret", "SLACK_API_URL": api_url}
    if channel is not None:
        env["SUPPORTBOT_SLACK__ESCALATION_CHANNEL"] = channel
    return SlackAdapter(settings=settings_for(**env))


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=TOKEN) as server:
        yield server


def bot_posts(fake: FakeSlack) -> list[tuple[str, str]]:
    return [(call.args["channel"], call.args["text"]) for call in fake.calls_to("chat.postMessage")]


async def test_the_hand_over_is_posted_to_the_escalation_channel_only(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url)
    assert isinstance(adapter, Escalates) and adapter.escalation_channel == ESCALATIONS
    text = "**Escalation** for session `abc`: VPN fails with error 809 after [reset](https://kb.example.test/vpn)."

    reference = await adapter.post_escalation(text)

    (message,) = fake.messages(ESCALATIONS)
    assert message["text"] == to_inert_text(text) and message["thread_ts"] is None and message["bot_id"]
    assert bot_posts(fake) == [(ESCALATIONS, to_inert_text(text))], "nothing is posted anywhere else"
    # The fake has no chat.getPermalink (it answers ok without a link), so the reference is channel/ts.
    assert reference == f"{ESCALATIONS}/{message['ts']}"
    (lookup,) = fake.calls_to("chat.getPermalink")
    assert lookup.args == {"channel": ESCALATIONS, "message_ts": message["ts"]}


async def test_a_long_hand_over_is_split_into_messages_in_order(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url)
    text = "\n\n".join(f"Step {i}: " + f"detail-{i} " * 120 for i in range(12))
    assert len(text) > 2 * MESSAGE_CHARS

    reference = await adapter.post_escalation(text)

    posted = [m["text"] for m in fake.messages(ESCALATIONS)]
    assert posted == [to_inert_text(part) for part in split_message(text)] and len(posted) >= 3
    assert all(len(part) <= MESSAGE_CHARS for part in posted)
    assert " ".join(" ".join(posted).split()) == " ".join(text.split()), "nothing is lost or reordered"
    assert reference == f"{ESCALATIONS}/{fake.messages(ESCALATIONS)[0]['ts']}"


async def test_the_hand_over_cannot_ping_the_channel(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url)
    await adapter.post_escalation("<!channel> <!here> <!subteam^S1> <@U42> please look")
    (call,) = fake.calls_to("chat.postMessage")
    text = call.args["text"]
    assert "<" not in text and ">" not in text
    assert text.startswith("&lt;!channel&gt; &lt;!here&gt;")
    assert not call.args.get("link_names")


async def test_a_missing_channel_is_an_escalation_failure(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url)
    fake.fail_next("chat.postMessage", "channel_not_found")
    with pytest.raises(EscalationFailed, match="channel_not_found") as raised:
        await adapter.post_escalation("VPN down")
    message = str(raised.value)
    assert ESCALATIONS in message and TOKEN not in message and "\n" not in message
    assert fake.messages(ESCALATIONS) == []


async def test_a_refused_token_is_an_escalation_failure_without_the_token(fake: FakeSlack) -> None:
    adapter = SlackAdapter(
        settings=settings_for(
            SLACK_BOT_TOKEN="xoxb-revoked-secret",
            SLACK_SIGNING_SECRET="secret",
            SLACK_API_URL=fake.api_url,
            SUPPORTBOT_SLACK__ESCALATION_CHANNEL=ESCALATIONS,
        )
    )
    with pytest.raises(EscalationFailed, match="invalid_auth") as raised:
        await adapter.post_escalation("VPN down")
    assert "xoxb-revoked-secret" not in str(raised.value)


async def test_an_unreachable_slack_is_an_escalation_failure() -> None:
    async with FakeSlack(bot_token=TOKEN) as gone:
        api_url = gone.api_url
    adapter = adapter_for(api_url)  # nothing listens on the closed fake's port any more
    with pytest.raises(EscalationFailed, match="could not be reached") as raised:
        await adapter.post_escalation("VPN down")
    assert TOKEN not in str(raised.value) and "\n" not in str(raised.value)


async def test_a_failed_permalink_lookup_keeps_the_posted_escalation(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url)
    fake.fail_next("chat.getPermalink", "message_not_found")
    reference = await adapter.post_escalation("VPN down")
    (message,) = fake.messages(ESCALATIONS)
    assert reference == f"{ESCALATIONS}/{message['ts']}"
    assert len(fake.calls_to("chat.postMessage")) == 1, "not posted twice"


async def test_without_a_channel_nothing_is_posted(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url, channel=None)
    assert adapter.escalation_channel is None
    with pytest.raises(EscalationFailed, match="not configured"):
        await adapter.post_escalation("VPN down")
    assert fake.calls == []


async def test_a_blank_hand_over_is_refused_before_calling_slack(fake: FakeSlack) -> None:
    adapter = adapter_for(fake.api_url)
    with pytest.raises(EscalationFailed, match="empty"):
        await adapter.post_escalation(" \n ")
    assert fake.calls == []
