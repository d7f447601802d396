"""Escalations through the Discord adapter: the real discord.py client against the local fake Discord."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from adapters.discord_bot import DiscordAdapter, split_message
from adapters.discord_bot.text import MESSAGE_LIMIT, to_inert_text
from bot.adapter import Escalates
from bot.errors import EscalationFailed
from bot.memory.memory import MemoryStore
from tests.fakes.discord_server import FakeDiscord, RestCall
from tests.fakes.models import RecordingModel
from tests.helpers import make_bot, settings_for

LATE_THREAD = 4_998  # exists on Discord, but the client never heard of it
UNKNOWN_CHANNEL = 4_999


def adapter_for(fake: FakeDiscord, channel: int | None) -> DiscordAdapter:
    env = {"DISCORD_TOKEN": fake.token, "DISCORD_API_URL": fake.api_url, "DISCORD_GATEWAY_URL": fake.gateway_url}
    if channel is not None:
        env["SUPPORTBOT_DISCORD__ESCALATION_CHANNEL"] = str(channel)
    return DiscordAdapter(settings=settings_for(**env), guild_ready_timeout=0.05)


@contextlib.asynccontextmanager
async def connected(fake: FakeDiscord, channel: int | None) -> AsyncIterator[DiscordAdapter]:
    """A started adapter whose escalations go to ``channel``."""
    store = MemoryStore()
    bot = make_bot(store, RecordingModel())
    adapter = adapter_for(fake, channel)
    try:
        await adapter.start(bot)
        yield adapter
    finally:
        await bot.aclose()
        await adapter.aclose()
        await store.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


def message_posts(fake: FakeDiscord) -> list[RestCall]:
    return [c for c in fake.calls("POST", "/channels/") if c.path.endswith("/messages")]


def pings_nobody(call: RestCall) -> bool:
    return call.json["allowed_mentions"]["parse"] == []


def jump_url(fake: FakeDiscord, channel_id: int, message: dict[str, object]) -> str:
    return f"https://discord.com/channels/{fake.guild_id}/{channel_id}/{message['id']}"


async def test_the_hand_over_is_posted_to_the_escalation_channel_only(fake: FakeDiscord) -> None:
    text = "@everyone **Escalation** for session `abc` from <@5000>: VPN fails with error 809."
    async with connected(fake, fake.channel_id) as adapter:
        assert isinstance(adapter, Escalates) and adapter.escalation_channel == str(fake.channel_id)
        reference = await adapter.post_escalation(text)
    (message,) = fake.messages(fake.channel_id)
    assert message["content"] == to_inert_text(text)
    assert reference == jump_url(fake, fake.channel_id, message)
    (call,) = message_posts(fake)
    assert call.path == f"/channels/{fake.channel_id}/messages", "nothing is posted anywhere else"
    assert pings_nobody(call) and "message_reference" not in call.json


async def test_a_channel_missing_from_the_cache_is_fetched(fake: FakeDiscord) -> None:
    async with connected(fake, LATE_THREAD) as adapter:
        # Created after READY and never announced on the gateway, so only a fetch finds it.
        thread = fake.thread_channel(name="escalations", thread_id=LATE_THREAD)
        reference = await adapter.post_escalation("printer on fire")
    assert fake.calls("GET", f"/channels/{thread}")
    (message,) = fake.messages(thread)
    assert message["content"] == "printer on fire" and reference == jump_url(fake, thread, message)
    assert fake.messages(fake.channel_id) == []


async def test_a_long_hand_over_is_split_into_messages_in_order(fake: FakeDiscord) -> None:
    text = "\n\n".join(f"Step {i}: " + f"detail-{i} " * 60 for i in range(12))
    assert len(text) > 2 * MESSAGE_LIMIT
    async with connected(fake, fake.channel_id) as adapter:
        reference = await adapter.post_escalation(text)
    posted = fake.messages(fake.channel_id)
    contents = [m["content"] for m in posted]
    assert contents == split_message(text) and len(contents) >= 3
    assert all(len(part) <= MESSAGE_LIMIT for part in contents)
    assert " ".join(" ".join(contents).split()) == " ".join(text.split()), "nothing is lost or reordered"
    assert reference == jump_url(fake, fake.channel_id, posted[0])
    assert all(pings_nobody(call) for call in message_posts(fake))


async def test_an_unknown_channel_is_an_escalation_failure(fake: FakeDiscord) -> None:
    async with connected(fake, UNKNOWN_CHANNEL) as adapter:
        with pytest.raises(EscalationFailed, match="Unknown Channel") as raised:
            await adapter.post_escalation("VPN down")
    message = str(raised.value)
    assert str(UNKNOWN_CHANNEL) in message and fake.token not in message and "\n" not in message
    assert message_posts(fake) == []


async def test_a_refused_post_is_an_escalation_failure(fake: FakeDiscord) -> None:
    async with connected(fake, fake.channel_id) as adapter:
        fake.fail_next("POST", f"/channels/{fake.channel_id}/messages", status=403)
        with pytest.raises(EscalationFailed, match="Missing Permissions"):
            await adapter.post_escalation("VPN down")
        assert fake.messages(fake.channel_id) == []
        # The adapter keeps working: the next escalation goes through.
        assert await adapter.post_escalation("VPN down, again")
    assert [m["content"] for m in fake.messages(fake.channel_id)] == ["VPN down, again"]


async def test_a_client_that_is_not_logged_in_is_an_escalation_failure(fake: FakeDiscord) -> None:
    adapter = adapter_for(fake, fake.channel_id)
    with pytest.raises(EscalationFailed, match="not logged in"):
        await adapter.post_escalation("before start")
    async with connected(fake, fake.channel_id) as started:
        pass
    with pytest.raises(EscalationFailed, match="not logged in"):
        await started.post_escalation("after close")
    assert message_posts(fake) == []


async def test_without_a_channel_nothing_is_posted(fake: FakeDiscord) -> None:
    async with connected(fake, None) as adapter:
        assert adapter.escalation_channel is None
        with pytest.raises(EscalationFailed, match="not configured"):
            await adapter.post_escalation("VPN down")
    assert message_posts(fake) == []


async def test_a_blank_hand_over_is_refused(fake: FakeDiscord) -> None:
    async with connected(fake, fake.channel_id) as adapter:
        with pytest.raises(EscalationFailed, match="empty"):
            await adapter.post_escalation("\n  \n")
    assert message_posts(fake) == []
