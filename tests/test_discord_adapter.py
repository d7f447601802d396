"""The Discord adapter: the real discord.py client, driven by the adapter, against the local fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord_bot import DiscordAdapter, Place, incoming_message, split_message, strip_mentions, thread_name
from adapters.discord_bot.commands import HELP_TEXT, RESET_DONE
from adapters.discord_bot.text import FENCE
from bot.core import SupportBot
from bot.errors import ConfigError
from bot.memory.memory import MemoryStore
from bot.session import SessionKey
from tests.fakes.discord_server import EPHEMERAL, FakeDiscord, RestCall
from tests.fakes.models import RecordingModel
from tests.helpers import make_bot, settings_for

USER = 5000
OTHER = 5001
TIMEOUT = 60.0  # seconds: a guard against a hang, far above any wait on a busy machine
_MESSAGE_PATH = re.compile(r"/channels/\d+/messages(/\d+)?")


@dataclass
class Running:
    fake: FakeDiscord
    adapter: DiscordAdapter
    bot: SupportBot
    store: MemoryStore
    model: RecordingModel

    async def settle(self) -> None:
        """Wait until every message the adapter accepted is fully answered."""
        async with asyncio.timeout(TIMEOUT):
            while self.adapter.in_flight or not await self.adapter.idle():
                await asyncio.sleep(0.01)

    def key(self, *, channel: int, thread: int | None = None, user: int = USER) -> SessionKey:
        """The thread_user session of ``user`` in the fake guild."""
        thread_id = None if thread is None else str(thread)
        return SessionKey("discord", str(self.fake.guild_id), str(channel), thread_id, str(user))

    def dm_key(self, user: int = USER) -> SessionKey:
        return SessionKey("discord", None, str(self.fake.dm_channel(user)), None, str(user))

    def last_prompt(self) -> str:
        return "\n".join(m.text for m in self.model.prompts[-1])


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, model: RecordingModel | None = None, **env: str) -> AsyncIterator[Running]:
    """A SupportBot on a memory store, served by a started DiscordAdapter connected to ``fake``."""
    settings = settings_for(
        DISCORD_TOKEN=fake.token, DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url, **env
    )
    store = MemoryStore()
    chat_model = model or RecordingModel()
    bot = make_bot(store, chat_model)
    adapter = DiscordAdapter(settings=settings, guild_ready_timeout=0.05)
    try:
        await adapter.start(bot)
        yield Running(fake, adapter, bot, store, chat_model)
    finally:
        await bot.aclose()
        await adapter.aclose()
        await store.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def run(fake: FakeDiscord) -> AsyncIterator[Running]:
    async with running(fake) as started:
        yield started


def mention(fake: FakeDiscord, text: str, *, author: int = USER, **options: Any) -> dict[str, Any]:
    return fake.message_payload(
        content=f"<@{fake.bot_user_id}> {text}", author_id=author, mentions=[fake.bot_user_id], **options
    )


def dm(fake: FakeDiscord, text: str, *, author: int = USER) -> dict[str, Any]:
    return fake.message_payload(content=text, author_id=author, guild_id=None)


def contents(fake: FakeDiscord, channel_id: int) -> list[str]:
    return [m["content"] for m in fake.messages(channel_id)]


def message_writes(fake: FakeDiscord) -> list[RestCall]:
    """Every message the client sent or edited through the channel routes."""
    return [c for c in fake.requests if c.method in ("POST", "PATCH") and _MESSAGE_PATH.fullmatch(c.path)]


async def ask(run: Running, payload: dict[str, Any], *, channel_id: int) -> list[str]:
    """Dispatch a message, wait for its answer in ``channel_id`` and for the turn to finish."""
    path = f"/channels/{channel_id}/messages"
    seen = len(run.fake.calls("POST", path))
    await run.fake.dispatch("MESSAGE_CREATE", payload)
    await run.fake.wait_for("POST", path, count=seen + 1)
    await run.settle()
    return contents(run.fake, channel_id)


async def invoke(run: Running, name: str, **options: Any) -> RestCall:
    """Run a slash command and return the interaction callback the adapter sent."""
    payload = run.fake.interaction_payload(name=name, **options)
    await run.fake.dispatch("INTERACTION_CREATE", payload)
    (callback,) = await run.fake.wait_for("POST", f"/interactions/{payload['id']}/{payload['token']}/callback")
    return callback


def fences_balanced(part: str) -> bool:
    """Every code block opened in ``part`` is closed in it (a one-line ```` ```x``` ```` opens nothing)."""
    markers = [line.strip() for line in part.splitlines() if line.strip().startswith(FENCE)]
    return sum(1 for m in markers if FENCE not in m[len(FENCE) :]) % 2 == 0


# ---------------------------------------------------------------- pure helpers


def test_split_keeps_short_text_whole_and_drops_blank_text() -> None:
    assert split_message("  hello  ") == ["hello"]
    assert split_message("x" * 2_000) == ["x" * 2_000]
    assert split_message(" \n\n ") == []
    with pytest.raises(ValueError):
        split_message("text", limit=10)


def test_split_prefers_paragraph_boundaries() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(12)]
    parts = split_message("\n\n".join(p.strip() for p in paragraphs), limit=1_000)
    assert all(len(p) <= 1_000 for p in parts)
    for part in parts:  # every part is whole paragraphs
        assert all(chunk.startswith("Paragraph ") for chunk in part.split("\n\n"))
    assert "\n\n".join(parts) == "\n\n".join(p.strip() for p in paragraphs)


def test_split_inside_a_long_code_block_closes_and_reopens_the_fence() -> None:
    code = "\n".join(f"    step_{i}()  # keep indentation" for i in range(200))
    text = f"Run this:\n\n```python\n{code}\n```\n\nThen reboot."
    parts = split_message(text)
    assert len(parts) >= 4 and all(len(p) <= 2_000 for p in parts)
    assert all(fences_balanced(p) for p in parts)
    assert all(p.startswith("```python\n") for p in parts[1:-1])
    assert parts[-1].endswith("Then reboot.")
    body = [line for p in parts for line in p.splitlines() if "step_" in line]
    assert body == code.splitlines()  # no code line lost, cut or unindented


def test_split_moves_the_closing_fence_into_the_part_it_ends() -> None:
    block = "```\n" + "a" * 60 + "\n```"
    text = "x" * 35 + "\n" + block + "\n" + "tail " * 10
    parts = split_message(text, limit=100)
    assert all(len(p) <= 100 and fences_balanced(p) for p in parts)
    assert not any(p.startswith("```\n```") for p in parts)  # no empty reopened block


def test_split_long_lines_at_whitespace_then_hard() -> None:
    words = " ".join(["abcdefghi"] * 500)
    parts = split_message(words)
    assert all(len(p) <= 2_000 for p in parts)
    assert " ".join(parts) == words
    solid = "y" * 4_500
    assert "".join(split_message(solid)) == solid


def test_split_is_stable_while_a_reply_streams() -> None:
    text = ("Intro line\n\n```sh\n" + "echo step\n" * 400 + "```\n\n" + "Outro sentence. " * 200).strip()
    final = split_message(text)
    for end in range(1, len(text), 97):
        partial = split_message(text[:end])
        assert partial[:-1] == final[: len(partial) - 1]


def test_split_ignores_one_line_code_blocks() -> None:
    text = "\n".join(["```inline code```"] + ["line of text"] * 300)
    assert all(fences_balanced(p) and not p.endswith("\n```") for p in split_message(text, limit=500))


def test_strip_mentions_and_thread_name() -> None:
    assert strip_mentions("<@1000> my vpn <@!1000> drops", user_id=1000) == "my vpn drops"
    assert strip_mentions("<@&77> help <@2000>", user_id=1000, role_id=77) == "help <@2000>"
    assert thread_name("\n  My   printer\tis broken  \nmore", fallback="x") == "My printer is broken"
    assert thread_name("", fallback="Help for ann") == "Help for ann"
    long_name = thread_name("word " * 40, fallback="x")
    assert len(long_name) <= 80 and long_name.endswith("…")


def test_incoming_message_maps_dm_channel_and_thread() -> None:
    direct = incoming_message(Place(None, 11), user_id=5, text="hi", message_id=99, sent_at=1.0)
    assert (direct.workspace, direct.channel, direct.thread, direct.is_direct) == (None, "11", None, True)
    opening = incoming_message(Place(3, 4).in_thread(99), user_id=5, text="hi", message_id=99, sent_at=1.0)
    assert (opening.platform, opening.workspace, opening.channel, opening.thread) == ("discord", "3", "4", "99")
    assert (opening.user, opening.event_id, opening.is_direct, opening.timestamp) == ("5", "99", False, 1.0)


def test_enabled_banner_with_and_without_token() -> None:
    on, line = DiscordAdapter.enabled(settings_for(DISCORD_TOKEN="sekrit-token"))
    assert on and line.startswith("discord: on (") and "wss://gateway.discord.gg/" in line
    assert "sekrit" not in line
    off, line = DiscordAdapter.enabled(settings_for())
    assert not off and line == "discord: off — set DISCORD_TOKEN to connect to Discord"


# ---------------------------------------------------------------- conversations


async def test_dm_is_answered_in_the_dm(run: Running) -> None:
    dm_id = run.fake.dm_channel(USER)
    assert await ask(run, dm(run.fake, "my laptop will not boot"), channel_id=dm_id) == [
        "reply to my laptop will not boot"
    ]
    assert run.fake.calls("POST", f"/channels/{dm_id}/typing")
    record = await run.store.get(run.dm_key())
    assert record is not None and [m.content for m in record.messages][0] == "my laptop will not boot"


async def test_mention_opens_a_thread_and_follow_ups_continue_in_its_session(run: Running) -> None:
    fake = run.fake
    opening = mention(fake, "my printer is broken")
    thread_id = int(opening["id"])
    assert await ask(run, opening, channel_id=thread_id) == ["reply to my printer is broken"]
    (create,) = fake.calls("POST", f"/channels/{fake.channel_id}/messages/{thread_id}/threads")
    assert create.json["name"] == "my printer is broken"
    assert fake.messages(fake.channel_id) == []  # nothing posted in the channel itself

    follow_up = fake.message_payload(content="it says offline", author_id=USER, channel_id=thread_id)
    assert (await ask(run, follow_up, channel_id=thread_id))[-1] == "reply to it says offline"
    assert "my printer is broken" in run.last_prompt()
    record = await run.store.get(run.key(channel=fake.channel_id, thread=thread_id))
    assert record is not None and len(record.messages) == 4


async def test_two_users_in_one_thread_keep_separate_sessions(run: Running) -> None:
    fake = run.fake
    opening = mention(fake, "secret ticket ALPHA")
    thread_id = int(opening["id"])
    await ask(run, opening, channel_id=thread_id)

    other = fake.message_payload(content="my own question", author_id=OTHER, channel_id=thread_id)
    await fake.dispatch("MESSAGE_CREATE", other)
    await fake.wait_for("POST", f"/channels/{thread_id}/messages", count=2)
    await run.settle()
    assert "my own question" in run.last_prompt() and "ALPHA" not in run.last_prompt()
    mine = await run.store.get(run.key(channel=fake.channel_id, thread=thread_id))
    theirs = await run.store.get(run.key(channel=fake.channel_id, thread=thread_id, user=OTHER))
    assert mine is not None and theirs is not None and mine.session_id != theirs.session_id


async def test_bots_webhooks_own_and_unmentioned_messages_are_ignored(run: Running) -> None:
    fake = run.fake
    ignored = [
        mention(fake, "from a bot", author=6000, bot=True),
        mention(fake, "from a webhook", author=6001, webhook_id=7000),
        mention(fake, "from myself", author=fake.bot_user_id),
        fake.message_payload(content="no mention here", author_id=USER),
        fake.message_payload(content="in a stranger's thread", author_id=USER, thread=True),
    ]
    for payload in ignored:
        await fake.dispatch("MESSAGE_CREATE", payload)
    dm_id = fake.dm_channel(USER)
    await ask(run, dm(fake, "sentinel"), channel_id=dm_id)  # events arrive in order: the ignored ones came first
    assert {c.path.rsplit("/messages", 1)[0] for c in message_writes(fake)} == {f"/channels/{dm_id}"}
    assert len(run.model.prompts) == 1


async def test_a_message_delivered_twice_is_answered_once(run: Running) -> None:
    fake = run.fake
    payload = mention(fake, "duplicate me")
    thread_id = int(payload["id"])
    await fake.dispatch("MESSAGE_CREATE", payload)
    await fake.dispatch("MESSAGE_CREATE", payload)
    await fake.wait_for("POST", f"/channels/{thread_id}/messages")
    await asyncio.sleep(0.1)  # let the second delivery reach the adapter
    await run.settle()
    assert contents(fake, thread_id) == ["reply to duplicate me"]
    assert len(run.model.prompts) == 1


async def test_model_output_never_pings_anyone(fake: FakeDiscord) -> None:
    model = RecordingModel(reply=f"@everyone @here <@&{fake.guild_id}> <@{USER}> please reboot " + "now " * 600)
    async with running(fake, model) as run:
        opening = mention(fake, "ping test")
        await ask(run, opening, channel_id=int(opening["id"]))
        await ask(run, dm(fake, "again"), channel_id=fake.dm_channel(USER))
    writes = message_writes(fake)
    assert {c.method for c in writes} == {"POST", "PATCH"}
    for call in writes:
        assert call.json["allowed_mentions"]["parse"] == []
        assert not {"users", "roles"} & call.json["allowed_mentions"].keys()
        assert call.json["allowed_mentions"].get("replied_user", False) is False


async def test_long_reply_is_split_on_safe_boundaries(fake: FakeDiscord) -> None:
    code = "\n".join(f"netsh interface set interface Wi-Fi{i} admin=disable" for i in range(45))
    reply = "Try these steps.\n\n" + "Check the cable. " * 80 + f"\n\n```powershell\n{code}\n```\n\n" + "Done. " * 250
    assert len(reply) > 5_000
    async with running(fake, RecordingModel(reply=reply)) as run:
        dm_id = fake.dm_channel(USER)
        parts = await ask(run, dm(fake, "wifi broken"), channel_id=dm_id)
    assert len(parts) >= 3
    assert all(len(p) <= 2_000 and fences_balanced(p) for p in parts)
    assert parts == split_message(reply)
    assert [line for p in parts for line in p.splitlines() if "netsh" in line] == code.splitlines()


async def test_streamed_edits_are_throttled_to_one_a_second(fake: FakeDiscord) -> None:
    async with running(fake, RecordingModel(reply=" ".join(f"w{i}" for i in range(30)), chunk_delay=0.05)) as run:
        dm_id = fake.dm_channel(USER)
        assert (await ask(run, dm(fake, "slow"), channel_id=dm_id))[0].endswith("w29")
    (first,) = fake.calls("POST", f"/channels/{dm_id}/messages")
    edits = fake.calls("PATCH", f"/channels/{dm_id}/messages/")
    assert 1 <= len(edits) <= 3
    times = [first.at] + [e.at for e in edits]
    assert all(later - earlier >= 0.9 for earlier, later in zip(times[:-2], times[1:-1], strict=True))


async def test_rate_limited_post_is_waited_out(run: Running) -> None:
    dm_id = run.fake.dm_channel(USER)
    run.fake.fail_next("POST", f"/channels/{dm_id}/messages", status=429, retry_after=0.3)
    assert await ask(run, dm(run.fake, "hello"), channel_id=dm_id) == ["reply to hello"]
    first, second = run.fake.calls("POST", f"/channels/{dm_id}/messages")
    assert second.at - first.at >= 0.3


async def test_discord_error_is_logged_with_the_session_and_the_bot_keeps_going(
    run: Running, caplog: pytest.LogCaptureFixture
) -> None:
    fake = run.fake
    dm_id = fake.dm_channel(USER)
    fake.fail_next("POST", f"/channels/{dm_id}/messages", status=403)
    with caplog.at_level(logging.WARNING, logger="supportbot.discord"):
        await fake.dispatch("MESSAGE_CREATE", dm(fake, "first"))
        await fake.wait_for("POST", f"/channels/{dm_id}/messages")
        await run.settle()
    (record,) = [r for r in caplog.records if r.name == "supportbot.discord"]
    assert getattr(record, "session_id", None) == run.dm_key().id and "403" in record.getMessage()
    assert await ask(run, dm(fake, "second"), channel_id=dm_id) == ["reply to second"]
    stored = await run.store.get(run.dm_key())
    assert stored is not None and [m.content for m in stored.messages if m.role == "user"] == ["first", "second"]


async def test_refused_thread_falls_back_to_an_inline_reply(run: Running) -> None:
    fake = run.fake
    opening = mention(fake, "no threads here")
    fake.fail_next("POST", f"/channels/{fake.channel_id}/messages/{opening['id']}/threads", status=403)
    assert await ask(run, opening, channel_id=fake.channel_id) == ["reply to no threads here"]
    (post,) = [c for c in fake.calls("POST", f"/channels/{fake.channel_id}/messages") if c.path.endswith("messages")]
    assert str(post.json["message_reference"]["message_id"]) == opening["id"]


async def test_a_message_that_arrives_while_the_bot_shuts_down_waits_in_the_inbox(run: Running) -> None:
    await run.bot.aclose()
    dm_id = run.fake.dm_channel(USER)
    await run.fake.dispatch("MESSAGE_CREATE", dm(run.fake, "late"))
    async with asyncio.timeout(TIMEOUT):
        while await run.adapter.idle():  # recorded, then tried: the closing bot takes no turn, nothing is dropped
            await asyncio.sleep(0.01)
    assert run.fake.calls("POST", f"/channels/{dm_id}/messages") == []


# ---------------------------------------------------------------- settings


async def test_inline_replies_when_reply_in_thread_is_off(fake: FakeDiscord) -> None:
    async with running(fake, SUPPORTBOT_DISCORD__REPLY_IN_THREAD="false") as run:
        opening = mention(fake, "inline please")
        assert await ask(run, opening, channel_id=fake.channel_id) == ["reply to inline please"]
        assert not fake.calls("POST", f"/channels/{fake.channel_id}/messages/{opening['id']}/threads")
        (post,) = fake.calls("POST", f"/channels/{fake.channel_id}/messages")
        assert str(post.json["message_reference"]["message_id"]) == opening["id"]
        assert (await run.store.get(run.key(channel=fake.channel_id))) is not None


async def test_channel_allowlist_skips_other_channels_but_not_dms(fake: FakeDiscord) -> None:
    async with running(fake, SUPPORTBOT_DISCORD__CHANNELS="[4321]") as run:
        await fake.dispatch("MESSAGE_CREATE", mention(fake, "not here"))
        await ask(run, dm(fake, "but here"), channel_id=fake.dm_channel(USER))
        assert len(run.model.prompts) == 1 and "but here" in run.last_prompt()


async def test_managed_role_mention_triggers(run: Running) -> None:
    fake = run.fake
    role_id = 3100
    role = {"id": str(role_id), "name": "supportbot", "permissions": "0", "position": 1, "color": 0}
    role |= {"hoist": False, "managed": True, "mentionable": True, "tags": {"bot_id": str(fake.bot_user_id)}}
    await fake.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(fake.guild_id), "role": role})
    payload = fake.message_payload(
        content=f"<@&{role_id}> role ping", author_id=USER, extra={"mention_roles": [str(role_id)]}
    )
    assert await ask(run, payload, channel_id=int(payload["id"])) == ["reply to role ping"]


async def test_threads_the_bot_joined_are_followed(run: Running) -> None:
    fake = run.fake
    thread_id = fake.thread_channel(owner_id=USER, name="user thread")
    await fake.dispatch("MESSAGE_CREATE", fake.message_payload(content="before", author_id=USER, channel_id=thread_id))
    await ask(run, dm(fake, "sentinel"), channel_id=fake.dm_channel(USER))  # "before" has been looked at
    await fake.add_thread_member(thread_id)
    after = fake.message_payload(content="after joining", author_id=USER, channel_id=thread_id)
    assert await ask(run, after, channel_id=thread_id) == ["reply to after joining"]


async def test_sharded_client(fake: FakeDiscord) -> None:
    async with running(fake, SUPPORTBOT_DISCORD__SHARD_COUNT="1") as run:
        assert fake.identify is not None and fake.identify["shard"] == [0, 1]
        assert await ask(run, dm(fake, "sharded"), channel_id=fake.dm_channel(USER)) == ["reply to sharded"]


async def test_wrong_token_is_a_config_error_and_restores_discord_py(fake: FakeDiscord) -> None:
    original = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    settings = settings_for(DISCORD_TOKEN="wrong", DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url)
    adapter = DiscordAdapter(settings=settings, guild_ready_timeout=0.05)
    store = MemoryStore()
    bot = make_bot(store, RecordingModel())
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        await adapter.start(bot)
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == original
    await adapter.aclose()
    await bot.aclose()


async def test_start_points_discord_py_at_the_settings_and_aclose_restores(fake: FakeDiscord) -> None:
    original = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    async with running(fake) as run:
        assert Route.BASE == fake.api_url and str(DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
        assert fake.connected and fake.identify is not None
        assert (
            fake.identify["intents"]
            == discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=True).value
        )
        await run.adapter.aclose()
        await run.adapter.aclose()  # idempotent
        assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == original
        assert not fake.connected


# ---------------------------------------------------------------- slash commands


async def test_reset_forgets_the_dm_session(run: Running) -> None:
    fake = run.fake
    assert fake.commands[None]  # published globally when no guilds are configured
    await ask(run, dm(fake, "remember me"), channel_id=fake.dm_channel(USER))
    assert await run.store.get(run.dm_key()) is not None
    callback = await invoke(run, "reset", user_id=USER, guild_id=None)
    assert callback.json["data"]["content"] == RESET_DONE and callback.json["data"]["flags"] == EPHEMERAL
    assert await run.store.get(run.dm_key()) is None


async def test_commands_in_a_thread_use_that_threads_session(fake: FakeDiscord) -> None:
    async with running(fake, SUPPORTBOT_DISCORD__GUILDS=f"[{fake.guild_id}]") as run:
        assert [c["name"] for c in fake.commands[fake.guild_id]] == ["reset", "summary", "export", "help"]
        opening = mention(fake, "vpn drops every hour")
        thread_id = int(opening["id"])
        await ask(run, opening, channel_id=thread_id)

        summary = await invoke(run, "summary", user_id=USER, channel_id=thread_id)
        assert summary.json["data"]["flags"] == EPHEMERAL
        assert summary.json["data"]["content"].startswith("This conversation has 1 turn.")
        assert "vpn drops every hour" in summary.json["data"]["content"]

        export = await invoke(run, "export", user_id=USER, channel_id=thread_id)
        body = export.json["data"]["content"]
        assert body.startswith("```json\n") and export.json["data"]["flags"] == EPHEMERAL
        exported = json.loads(body.removeprefix("```json\n").removesuffix("\n```"))
        key = run.key(channel=fake.channel_id, thread=thread_id)
        assert exported["session_id"] == key.id and len(exported["messages"]) == 2

        other = await invoke(run, "summary", user_id=OTHER, channel_id=thread_id)
        assert "vpn" not in other.json["data"]["content"]  # another user's session in the same thread

        await invoke(run, "reset", user_id=USER, channel_id=thread_id)
        assert await run.store.get(key) is None


async def test_large_export_is_an_ephemeral_file(fake: FakeDiscord) -> None:
    async with running(fake, RecordingModel(reply="long answer " * 300)) as run:
        await ask(run, dm(fake, "export me"), channel_id=fake.dm_channel(USER))
        callback = await invoke(run, "export", user_id=USER, guild_id=None)
    assert callback.json["data"]["flags"] == EPHEMERAL
    (upload,) = callback.files
    assert upload["filename"] == "supportbot-session.json" and upload["size"] > 1_900


async def test_help_and_summary_of_an_empty_conversation(run: Running) -> None:
    help_reply = await invoke(run, "help", user_id=USER)
    assert help_reply.json["data"]["content"] == HELP_TEXT
    summary = await invoke(run, "summary", user_id=USER)
    assert "no conversation" in summary.json["data"]["content"]
