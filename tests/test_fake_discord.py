"""Tests for the fake Discord server, driven by the real ``discord.py`` client over HTTP and a websocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord_bot import discord_intents
from tests.fakes.discord_server import EPHEMERAL, FakeDiscord, discord_py_endpoints

USER_ID = 5000
OTHER_USER_ID = 5001
TIMEOUT = 60.0  # seconds: a guard against a hang, far above any wait on a busy machine

Handler = Callable[[discord.Message], Awaitable[Any]]


class Bot:
    """A real ``discord.Client`` connected to a fake, with queues of what it received."""

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.own: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.edits: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.threads: asyncio.Queue[discord.Thread] = asyncio.Queue()
        self.handler: Handler | None = None
        self.results: asyncio.Queue[Any] = asyncio.Queue()

        @client.event
        async def on_ready() -> None:
            self.ready.set()

        @client.event
        async def on_resumed() -> None:
            self.resumed.set()

        @client.event
        async def on_thread_create(thread: discord.Thread) -> None:
            self.threads.put_nowait(thread)

        @client.event
        async def on_raw_message_edit(payload: discord.RawMessageUpdateEvent) -> None:
            self.edits.put_nowait(payload.message)

        @client.event
        async def on_message(message: discord.Message) -> None:
            assert client.user is not None
            if message.author.id == client.user.id:
                self.own.put_nowait(message)
                return
            self.inbox.put_nowait(message)
            if self.handler is not None:
                try:
                    self.results.put_nowait(await self.handler(message))
                except Exception as exc:  # handed to the test, which asserts on it
                    self.results.put_nowait(exc)

    @property
    def user(self) -> discord.ClientUser:
        assert self.client.user is not None
        return self.client.user

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)

    async def next_own(self) -> discord.Message:
        return await asyncio.wait_for(self.own.get(), TIMEOUT)

    async def next_result(self) -> Any:
        return await asyncio.wait_for(self.results.get(), TIMEOUT)


@contextlib.asynccontextmanager
async def connected_bot(fake: FakeDiscord, **options: Any) -> AsyncIterator[Bot]:
    """Logs a real client in against ``fake``, waits for ``on_ready``, and closes it cleanly."""
    client = discord.Client(intents=discord_intents(), guild_ready_timeout=0.05, **options)
    bot = Bot(client)
    await client.login(fake.token)
    task = asyncio.create_task(client.connect())
    try:
        await asyncio.wait_for(bot.ready.wait(), TIMEOUT)
        yield bot
    finally:
        await client.close()
        await asyncio.wait_for(task, TIMEOUT)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        with discord_py_endpoints(server.api_url, server.gateway_url):
            yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[Bot]:
    async with connected_bot(fake) as connected:
        yield connected


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def mention(fake: FakeDiscord, content: str) -> dict[str, Any]:
    return fake.message_payload(
        content=f"<@{fake.bot_user_id}> {content}", author_id=USER_ID, mentions=[fake.bot_user_id]
    )


# ---------------------------------------------------------------- raw HTTP


async def test_endpoints_are_patched_and_restored() -> None:
    original_base, original_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as server:
        with discord_py_endpoints(server.api_url, server.gateway_url):
            assert Route("GET", "/users/@me").url == f"{server.api_url}/users/@me"
            assert str(DiscordWebSocket.DEFAULT_GATEWAY) == server.gateway_url
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == (original_base, original_gateway)
    assert original_base == "https://discord.com/api/v10"


async def test_rest_json_content_type_gateway_and_errors(fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
    auth = {"Authorization": f"Bot {fake.token}"}
    for path in ("/gateway", "/gateway/bot"):
        async with session.get(fake.api_url + path, headers=auth) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            body = await resp.json()
        assert body["url"] == fake.gateway_url
        assert body["shards"] == 1
        assert body["session_start_limit"]["remaining"] > 0

    async with session.get(fake.api_url + "/users/@me", headers=auth) as resp:
        assert (await resp.json())["bot"] is True
    async with session.get(fake.api_url + "/no/such/route", headers=auth) as resp:
        assert resp.status == 404
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "404: Not Found", "code": 0}
    async with session.get(fake.api_url + "/users/@me", headers={"Authorization": "Bot wrong"}) as resp:
        assert resp.status == 401

    assert [(c.method, c.path) for c in fake.requests] == [
        ("GET", "/gateway"),
        ("GET", "/gateway/bot"),
        ("GET", "/users/@me"),
        ("GET", "/no/such/route"),
        ("GET", "/users/@me"),
    ]
    assert fake.requests[0].headers["authorization"] == f"Bot {fake.token}"
    assert len(await fake.wait_for("get", "/users/@me", count=2)) == 2
    with pytest.raises(AssertionError, match="seen"):
        await fake.wait_for("POST", "/channels", timeout=0.05)


async def test_login_with_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord_intents())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()


async def test_zlib_stream_frames_end_with_sync_flush(session: aiohttp.ClientSession) -> None:
    async with FakeDiscord(gateway_compression=True) as server:
        url = f"{server.gateway_url}?v=10&encoding=json&compress=zlib-stream"
        async with session.ws_connect(url) as ws:
            inflate = zlib.decompressobj()

            async def receive() -> dict[str, Any]:
                msg = await ws.receive(timeout=TIMEOUT)
                assert msg.type is aiohttp.WSMsgType.BINARY
                assert msg.data.endswith(b"\x00\x00\xff\xff")
                decoded: dict[str, Any] = json.loads(inflate.decompress(msg.data))
                return decoded

            assert (await receive())["d"] == {"heartbeat_interval": 45000}
            await ws.send_json({"op": 2, "d": {"token": server.token, "intents": 1, "properties": {}}})
            ready, guild = await receive(), await receive()
            assert (ready["t"], ready["s"], guild["t"], guild["s"]) == ("READY", 1, "GUILD_CREATE", 2)
            assert server.ready.is_set()
            await ws.send_json({"op": 1, "d": 2})
            assert (await receive())["op"] == 11


# ---------------------------------------------------------------- real discord.py client


async def test_ready_sees_guild_channel_and_permissions(fake: FakeDiscord, bot: Bot) -> None:
    client = bot.client
    assert bot.user.id == fake.bot_user_id and bot.user.bot
    guild = client.get_guild(fake.guild_id)
    assert guild is not None and not guild.unavailable
    channel = client.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel) and channel.guild == guild
    assert guild.me is not None
    permissions = channel.permissions_for(guild.me)
    assert permissions.send_messages and permissions.read_messages and permissions.create_public_threads
    assert client.application_id == fake.application_id

    assert fake.ready.is_set() and fake.connected
    assert fake.identify is not None and fake.identify["intents"] == discord_intents().value
    query = fake.gateway_queries[0]
    assert (query["v"], query["encoding"]) == ("10", "json")
    assert query["compress"] in ("zlib-stream", "zstd-stream")  # always requested; text frames are accepted
    paths = [c.path for c in fake.requests]
    assert paths[:2] == ["/users/@me", "/oauth2/applications/@me"]


async def test_mention_reply_edit_typing_and_thread(fake: FakeDiscord, bot: Bot) -> None:
    async def reply(message: discord.Message) -> discord.Message:
        return await message.channel.send("hi", allowed_mentions=discord.AllowedMentions.none())

    bot.handler = reply
    await fake.dispatch("MESSAGE_CREATE", mention(fake, "my printer is broken"))

    message = await bot.next_message()
    assert message.content == f"<@{fake.bot_user_id}> my printer is broken"
    assert bot.user in message.mentions
    assert message.guild is not None and message.guild.id == fake.guild_id
    assert message.channel.id == fake.channel_id and message.author.id == USER_ID

    sent = await bot.next_result()
    assert isinstance(sent, discord.Message) and sent.content == "hi"
    (post,) = fake.calls("POST", f"/channels/{fake.channel_id}/messages")
    assert post.json["content"] == "hi"
    assert post.json["allowed_mentions"] == {"parse": []}
    echoed = await bot.next_own()  # real Discord echoes the bot's own messages
    assert echoed.id == sent.id

    edited = await sent.edit(content="hello again")
    assert edited.content == "hello again" and edited.edited_at is not None
    (patch,) = await fake.wait_for("PATCH", f"/channels/{fake.channel_id}/messages/{sent.id}")
    assert patch.json["content"] == "hello again"
    assert [m["content"] for m in fake.messages(fake.channel_id)] == ["hello again"]
    assert (await asyncio.wait_for(bot.edits.get(), TIMEOUT)).content == "hello again"

    async with message.channel.typing():
        pass
    assert len(fake.calls("POST", f"/channels/{fake.channel_id}/typing")) == 1

    thread = await message.create_thread(name="x")
    assert thread.id == message.id and thread.parent_id == fake.channel_id and thread.name == "x"
    (create,) = fake.calls("POST", f"/channels/{fake.channel_id}/messages/{message.id}/threads")
    assert create.json["name"] == "x"
    announced = await asyncio.wait_for(bot.threads.get(), TIMEOUT)
    assert announced.id == thread.id
    assert message.guild.get_thread(thread.id) is not None

    in_thread = await thread.send("thread reply")
    assert in_thread.channel.id == thread.id
    assert [m["content"] for m in fake.messages(thread.id)] == ["thread reply"]

    await fake.dispatch(
        "MESSAGE_CREATE", fake.message_payload(content="thanks", author_id=USER_ID, channel_id=thread.id)
    )
    follow_up = await bot.next_message()
    assert isinstance(follow_up.channel, discord.Thread) and follow_up.channel.id == thread.id


async def test_message_in_unannounced_thread_gets_thread_create_first(fake: FakeDiscord, bot: Bot) -> None:
    payload = fake.message_payload(content="new thread msg", author_id=USER_ID, thread=True)
    await fake.dispatch("MESSAGE_CREATE", payload)
    message = await bot.next_message()
    assert isinstance(message.channel, discord.Thread)
    assert message.channel.parent_id == fake.channel_id
    assert str(message.channel.id) == payload["channel_id"]


async def test_dm_message_reaches_on_message_without_guild(fake: FakeDiscord, bot: Bot) -> None:
    dm_id = fake.dm_channel(USER_ID)
    assert fake.dm_channel(USER_ID) == dm_id
    await fake.dispatch("MESSAGE_CREATE", fake.message_payload(content="psst", author_id=USER_ID, guild_id=None))

    message = await bot.next_message()
    assert message.guild is None
    assert isinstance(message.channel, discord.DMChannel) and message.channel.id == dm_id
    assert message.content == "psst"

    await message.channel.send("dm reply")
    assert [m["content"] for m in fake.messages(dm_id)] == ["dm reply"]
    assert (await bot.next_own()).guild is None

    fetched = await bot.client.fetch_channel(dm_id)
    assert isinstance(fetched, discord.DMChannel)
    other = await bot.client.fetch_user(OTHER_USER_ID)
    dm = await other.create_dm()
    assert dm.id == fake.dm_channel(OTHER_USER_ID)


async def test_rate_limit_429_is_waited_out_and_retried(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.client.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("POST", f"/channels/{fake.channel_id}/messages", status=429, retry_after=0.3)

    sent = await channel.send("after the limit")

    assert sent.content == "after the limit"
    first, second = fake.calls("POST", f"/channels/{fake.channel_id}/messages")
    assert second.at - first.at >= 0.3
    assert [m["content"] for m in fake.messages(fake.channel_id)] == ["after the limit"]


async def test_403_and_404_surface_as_discord_exceptions(fake: FakeDiscord, bot: Bot) -> None:
    channel = bot.client.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    fake.fail_next("POST", f"/channels/{fake.channel_id}/messages", status=403)
    with pytest.raises(discord.Forbidden) as forbidden:
        await channel.send("nope")
    assert (forbidden.value.status, forbidden.value.code, forbidden.value.text) == (403, 50013, "Missing Permissions")

    with pytest.raises(discord.NotFound) as not_found:
        await bot.client.http.send_typing(123)
    assert not_found.value.code == 10003
    assert fake.messages(fake.channel_id) == []


async def test_gateway_resume_replays_missed_events(fake: FakeDiscord, bot: Bot) -> None:
    await fake.disconnect(code=4000)
    await fake.dispatch("MESSAGE_CREATE", fake.message_payload(content="while away", author_id=USER_ID))

    await asyncio.wait_for(bot.resumed.wait(), TIMEOUT)
    assert (await bot.next_message()).content == "while away"
    resume = [f for f in fake.gateway_frames if f["op"] == 6]
    assert len(resume) == 1 and resume[0]["d"]["session_id"] is not None
    assert len(fake.gateway_queries) == 2


async def test_zstd_or_zlib_compressed_gateway_with_real_client() -> None:
    async with FakeDiscord(gateway_compression=True) as server:
        with discord_py_endpoints(server.api_url, server.gateway_url):
            async with connected_bot(server) as connected:
                await server.dispatch("MESSAGE_CREATE", mention(server, "compressed"))
                assert (await connected.next_message()).content.endswith("compressed")


async def test_slash_command_sync_and_ephemeral_response(fake: FakeDiscord, bot: Bot) -> None:
    tree = app_commands.CommandTree(bot.client)
    guild = discord.Object(id=fake.guild_id)
    invoked: asyncio.Queue[discord.Interaction] = asyncio.Queue()

    responses: list[discord.InteractionCallbackResponse[discord.Client]] = []

    @tree.command(name="ask", description="Ask the helpdesk", guild=guild)
    async def ask(interaction: discord.Interaction, question: str) -> None:
        responses.append(await interaction.response.send_message(f"ok: {question}", ephemeral=True))
        await interaction.followup.send("more", ephemeral=True)
        invoked.put_nowait(interaction)

    synced = await tree.sync(guild=guild)
    assert [c.name for c in synced] == ["ask"]
    (put,) = fake.calls("PUT", f"/applications/{fake.application_id}/guilds/{fake.guild_id}/commands")
    assert put.json[0]["name"] == "ask"

    options = [{"name": "question", "type": 3, "value": "vpn"}]
    payload = fake.interaction_payload(name="ask", user_id=USER_ID, options=options)
    assert payload["data"]["id"] == str(synced[0].id)
    await fake.dispatch("INTERACTION_CREATE", payload)

    interaction = await asyncio.wait_for(invoked.get(), TIMEOUT)
    assert interaction.user.id == USER_ID and interaction.guild_id == fake.guild_id
    (callback,) = fake.calls("POST", f"/interactions/{payload['id']}/{payload['token']}/callback")
    assert callback.json == {"type": 4, "data": {"content": "ok: vpn", "flags": EPHEMERAL, "tts": False}}
    assert callback.query == {"with_response": "1"}  # discord.py 2.7 parses the JSON callback response
    (response,) = responses
    assert response.is_ephemeral() and response.message_id is not None
    assert isinstance(response.resource, discord.InteractionMessage) and response.resource.content == "ok: vpn"
    (followup,) = fake.calls("POST", f"/webhooks/{fake.application_id}/{payload['token']}")
    assert followup.json["content"] == "more" and followup.json["flags"] == EPHEMERAL
    assert [m["content"] for m in fake.messages(fake.channel_id)] == ["ok: vpn", "more"]


async def test_global_command_in_a_dm(fake: FakeDiscord, bot: Bot) -> None:
    tree = app_commands.CommandTree(bot.client)
    invoked: asyncio.Queue[discord.Interaction] = asyncio.Queue()

    @tree.command(name="reset", description="Forget this conversation")
    async def reset(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.edit_original_response(content="done")
        invoked.put_nowait(interaction)

    await tree.sync()
    assert fake.calls("PUT", f"/applications/{fake.application_id}/commands")

    payload = fake.interaction_payload(name="reset", user_id=USER_ID, guild_id=None)
    await fake.dispatch("INTERACTION_CREATE", payload)
    interaction = await asyncio.wait_for(invoked.get(), TIMEOUT)
    assert interaction.guild is None and interaction.user.id == USER_ID
    (callback,) = fake.calls("POST", f"/interactions/{payload['id']}/")
    assert callback.json["type"] == 5 and callback.json["data"]["flags"] == EPHEMERAL
    (edit,) = fake.calls("PATCH", f"/webhooks/{fake.application_id}/{payload['token']}/messages/@original")
    assert edit.json["content"] == "done"
    assert [m["content"] for m in fake.messages(fake.dm_channel(USER_ID))] == ["done"]
