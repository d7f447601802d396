"""The Discord surface: gateway messages in, streamed replies out, plus the slash commands.

Which messages are answered:

* every direct message;
* in servers, a message that mentions the bot (or its managed role); with ``discord.reply_in_thread`` the mention
  opens a thread from the message and the conversation continues there, otherwise the reply quotes the message;
* with ``discord.follow_threads``, any message in a thread the bot opened or joined, without a new mention;
* with ``discord.channels`` set, only in those channels (or guilds); a thread counts as its parent channel.

The bot's own messages, other bots', webhooks' and system messages are ignored. Edits and deletions are ignored too:
an edited message is not answered again, and a deleted one stays in the session's memory until the session expires
or is reset with ``/reset``.

Escalations (``escalate_to_human``) go to ``discord.escalation_channel`` through the same posting path as replies,
split at Discord's message limit and pinging nobody.

discord.py reads its REST base and gateway URL from two class attributes, not from the client, so :meth:`start`
points them at ``discord.api_url`` / ``discord.gateway_url`` and :meth:`aclose` restores them: run one Discord
adapter per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord_bot.commands import add_commands, sync_commands
from adapters.discord_bot.mapping import Place, incoming_message, place_of
from adapters.discord_bot.replies import NO_PINGS, ReplyPoster, keep_typing, post
from adapters.discord_bot.text import split_message, strip_mentions, thread_name, to_inert_text
from bot.config import Settings
from bot.core import INTERNAL_ERROR_REPLY, SupportBot
from bot.errors import ConfigError, EscalationFailed, ShuttingDown, StoreUnavailable
from bot.inbox import Attempt, Inbox
from bot.inbox.desk import Desk
from bot.messages import IncomingMessage

log = logging.getLogger("supportbot.discord")

READY_TIMEOUT_S = 30.0  # login, command sync and the gateway handshake
SHARD_IDENTIFY_S = 5.5  # Discord accepts one IDENTIFY per 5 s, so each further shard adds this to the wait
GUILD_READY_TIMEOUT_S = 2.0  # discord.py's default wait for the servers' GUILD_CREATE after READY
CLOSE_GRACE_S = 5.0  # replies in flight get this long to finish posting on shutdown
GATEWAY_CLOSE_S = 5.0  # connect() returns soon after close(); this bounds a socket that hangs
THREAD_ARCHIVE_MIN: Final = 1_440  # a conversation thread hides after a day without messages
THREAD_EXISTS_CODE = 160_004  # "A thread has already been created for this message"

_ANSWERED_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


def discord_intents() -> discord.Intents:
    """Servers and channels, messages in servers and DMs, and their text (Message Content is privileged)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    return intents


@dataclass(frozen=True, slots=True)
class _Route:
    """An accepted message in the core's terms, and whether answering it opens a thread."""

    msg: IncomingMessage
    open_thread: bool = False


RECORD_RETRY_S = 30.0  # a message the inbox cannot take is tried again this long (Discord never redelivers)
NOT_RECORDED_REPLY = (
    "Sorry, I could not take your message just now (my memory is unavailable). Please send it again in a minute."
)


class DiscordAdapter:
    """Connects to Discord's gateway as the bot and answers messages through :class:`SupportBot`."""

    name: ClassVar[str] = "discord"

    def __init__(self, *, settings: Settings, guild_ready_timeout: float = GUILD_READY_TIMEOUT_S) -> None:
        """Prepare the adapter; nothing connects before :meth:`start`.

        Args:
            settings: the whole configuration; ``discord.*`` and ``DISCORD_TOKEN`` are read.
            guild_ready_timeout: how long discord.py waits for more servers after the last one arrives before it
                reports ready (tests pass a few milliseconds).
        """
        self._settings = settings
        self._options = settings.discord
        self._guild_ready_timeout = guild_ready_timeout
        self._bot: SupportBot | None = None
        self._client: discord.Client | None = None
        self._gateway: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # turns being answered; each owns its typing task
        self._saved_endpoints: tuple[str, yarl.URL] | None = None
        self._desk: Desk | None = None

    @classmethod
    def enabled(cls, settings: Settings) -> tuple[bool, str]:
        """On when ``DISCORD_TOKEN`` is set."""
        if settings.secrets.discord_token is None:
            return False, "discord: off — set DISCORD_TOKEN to connect to Discord"
        options = settings.discord
        replies = "mentions open threads" if options.reply_in_thread else "mentions answered inline"
        commands = f"commands in {len(options.guilds)} server(s)" if options.guilds else "global commands"
        shards = f", {options.shard_count} shards" if options.shard_count else ""
        return True, f"discord: on (gateway {options.gateway_url}; {replies}; {commands}{shards})"

    @property
    def in_flight(self) -> int:
        """Messages being answered right now."""
        return len(self._tasks)

    @property
    def escalation_channel(self) -> str | None:
        """The channel id escalations are posted to (``discord.escalation_channel``), or ``None``."""
        channel = self._options.escalation_channel
        return None if channel is None else str(channel)

    async def post_escalation(self, text: str) -> str:
        """Post a hand-over to the escalation channel as inert plain text, in several messages when over 2,000
        characters.

        The hand-over quotes the user, so nothing in it may render or ping: markdown and ``@`` are escaped (no
        masked link, no bold, no mention), URLs and domains defanged, embeds suppressed, and mentions disallowed.

        Returns:
            The first message's jump URL.

        Raises:
            EscalationFailed: no channel is configured, the text is blank, the client is not connected, or Discord
                refused the post (unknown channel, missing permissions, not a text channel) or could not be reached.
        """
        channel_id = self._options.escalation_channel
        if channel_id is None:
            raise EscalationFailed("escalation is not configured")
        parts = split_message(to_inert_text(text))
        if not parts:
            raise EscalationFailed("the escalation text is empty")
        client = self._client
        # Logged in is enough: the post goes over REST, so a worker-role process without a gateway can make it.
        if client is None or client.user is None:
            raise EscalationFailed("the Discord client is not logged in")
        try:
            # The cache only knows what the gateway announced; an archived thread, say, has to be fetched.
            channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
            if not isinstance(channel, discord.abc.Messageable):
                raise EscalationFailed(f"Discord channel {channel_id} does not take messages")
            sent = [await channel.send(part, allowed_mentions=NO_PINGS, suppress_embeds=True) for part in parts]
        except discord.HTTPException as exc:
            reason = " ".join(str(exc).split())  # Discord's form errors span several lines
            raise EscalationFailed(f"Discord refused the escalation post to {channel_id}: {reason}") from exc
        except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
            raise EscalationFailed(f"Discord could not be reached for the escalation: {type(exc).__name__}") from exc
        return sent[0].jump_url

    async def start(self, bot: SupportBot, *, inbox: Inbox | None = None, intake: bool = True) -> None:
        """Log in, publish the slash commands, connect to the gateway and return once Discord says ready.

        Messages are recorded in ``inbox`` as they arrive and answered by :meth:`answer`. Without ``intake`` (the
        worker role) the adapter only logs in to post replies: no gateway, no commands.

        Raises:
            ConfigError: the token was rejected, or the Message Content intent is not enabled for the bot.
            TimeoutError: Discord did not report ready within ``READY_TIMEOUT_S`` (plus ``SHARD_IDENTIFY_S`` per
                further shard).
            RuntimeError: the adapter was started before.
        """
        token = self._settings.secrets.discord_token
        if token is None:
            raise ConfigError("set DISCORD_TOKEN to connect to Discord")
        if self._bot is not None:
            raise RuntimeError("a DiscordAdapter starts once")
        self._bot = bot
        self._desk = Desk(inbox) if inbox is not None else Desk.own(self.name, self.answer)
        self._point_discord_py_at(api_url=self._options.api_url, gateway_url=self._options.gateway_url)
        client = self._client = self._new_client()
        ready = asyncio.Event()

        @client.event
        async def on_ready() -> None:
            ready.set()

        @client.event
        async def on_message(message: discord.Message) -> None:
            self._receive(message)

        tree = app_commands.CommandTree(client)
        add_commands(tree, bot)
        try:
            await client.login(token.get_secret_value())
            if not intake:
                return
            await sync_commands(tree, guilds=self._options.guilds)
            self._gateway = asyncio.create_task(client.connect(), name="discord-gateway")
            self._gateway.add_done_callback(lambda _: ready.set())
            timeout = READY_TIMEOUT_S + SHARD_IDENTIFY_S * ((self._options.shard_count or 1) - 1)
            try:
                await asyncio.wait_for(ready.wait(), timeout)
            except TimeoutError as exc:
                raise TimeoutError(f"Discord did not report ready within {timeout:.0f}s") from exc
            if self._gateway.done():
                self._gateway.result()  # connect() ended before ready: raise why
        except discord.LoginFailure as exc:
            await self.aclose()
            raise ConfigError("DISCORD_TOKEN was rejected by Discord") from exc
        except discord.PrivilegedIntentsRequired as exc:
            await self.aclose()
            raise ConfigError(
                "Discord refused the Message Content intent: switch it on under Bot → Privileged Gateway Intents "
                "in the developer portal"
            ) from exc
        except BaseException:
            await self.aclose()
            raise
        self._gateway.add_done_callback(self._gateway_stopped)

    async def idle(self) -> bool:
        """Whether every message this adapter recorded has been answered (its own inbox; tests and scripts)."""
        return self._desk is None or await self._desk.idle()

    async def aclose(self) -> None:
        """Let recordings and replies in flight finish (``CLOSE_GRACE_S``), disconnect, restore discord.py's
        endpoints."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._desk is not None:
            desk, self._desk = self._desk, None
            await desk.aclose(grace=CLOSE_GRACE_S)
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            done, _ = await asyncio.wait({gateway}, timeout=GATEWAY_CLOSE_S)
            if not done:
                gateway.cancel()
            await asyncio.gather(gateway, return_exceptions=True)
        self._restore_discord_py()

    # ------------------------------------------------------------------ lifecycle helpers

    def _new_client(self) -> discord.Client:
        options: dict[str, Any] = {
            "intents": discord_intents(),
            "allowed_mentions": NO_PINGS,
            "guild_ready_timeout": self._guild_ready_timeout,
        }
        if self._options.shard_count is not None:
            return discord.AutoShardedClient(shard_count=self._options.shard_count, **options)
        return discord.Client(**options)

    def _point_discord_py_at(self, *, api_url: str, gateway_url: str) -> None:
        self._saved_endpoints = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE = api_url.rstrip("/")
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def _restore_discord_py(self) -> None:
        if self._saved_endpoints is not None:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved_endpoints
            self._saved_endpoints = None

    def _gateway_stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("the Discord connection stopped: %s", exc, exc_info=exc)

    # ------------------------------------------------------------------ messages

    def _receive(self, message: discord.Message) -> None:
        """Gateway callback: decide at once and record the message in an owned task, so discord.py's event handler
        never waits; a worker answers it from the inbox."""
        if self._desk is None:
            return
        route = self._route(message)
        if route is not None:
            record = self._record(message, route)
            task = asyncio.get_running_loop().create_task(record, name=f"discord-record-{message.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record(self, message: discord.Message, route: _Route) -> None:
        """Record the message in the inbox, retrying a store outage for ``RECORD_RETRY_S``: the gateway delivered
        it once and never will again. If it still cannot be recorded, the user is asked to send it again."""
        assert self._bot is not None and self._desk is not None
        msg = route.msg
        session = self._bot.session_id(msg)
        entry = {
            "channel_id": str(message.channel.id),
            "guild_id": "" if message.guild is None else str(message.guild.id),
            "message_id": str(message.id),
            "author": message.author.display_name,
            "open_thread": "1" if route.open_thread else "",
        }
        deadline = time.monotonic() + RECORD_RETRY_S
        pause = 0.1
        while True:
            try:
                await self._desk.record(msg, route=entry, session_id=session)
                return
            except StoreUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    log.error("message %s not recorded: %s", message.id, exc, extra={"session_id": session})
                    await self._say(message.channel, NOT_RECORDED_REPLY, reference=None, session=session)
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _route(self, message: discord.Message) -> _Route | None:
        """Whether to answer ``message``, and as which :class:`IncomingMessage`; ``None`` to ignore it."""
        assert self._client is not None and self._client.user is not None
        me = self._client.user
        author = message.author
        if author.id == me.id or author.bot or message.webhook_id is not None:
            return None
        if message.type not in _ANSWERED_TYPES:
            return None
        channel, guild = message.channel, message.guild
        if guild is None:
            return _Route(self._incoming(message, place_of(channel, guild_id=None)))
        place = place_of(channel, guild_id=guild.id)
        allowed = self._options.channels
        if allowed and place.channel_id not in allowed and guild.id not in allowed:
            return None
        role = guild.self_role
        mentioned = any(user.id == me.id for user in message.mentions) or (
            role is not None and role in message.role_mentions
        )
        role_id = role.id if role is not None else None
        if isinstance(channel, discord.Thread):
            followed = self._options.follow_threads and (channel.owner_id == me.id or channel.me is not None)
            return _Route(self._incoming(message, place, role_id=role_id)) if mentioned or followed else None
        if not mentioned:
            return None
        if self._options.reply_in_thread and isinstance(channel, discord.TextChannel):
            permissions = channel.permissions_for(guild.me)
            if permissions.create_public_threads and permissions.send_messages_in_threads:
                # A thread started from a message takes the message's id, so the session can name it already.
                return _Route(self._incoming(message, place.in_thread(message.id), role_id=role_id), open_thread=True)
        return _Route(self._incoming(message, place, role_id=role_id))

    def _incoming(self, message: discord.Message, place: Place, *, role_id: int | None = None) -> IncomingMessage:
        assert self._client is not None and self._client.user is not None
        return incoming_message(
            place,
            user_id=message.author.id,
            text=strip_mentions(message.content, user_id=self._client.user.id, role_id=role_id),
            message_id=message.id,
            sent_at=message.created_at.timestamp(),
        )

    async def answer(self, attempt: Attempt) -> None:
        """Answer one recorded message (the worker's handler): open its thread if the mention asked for one, stream
        the reply there (or finish the message an earlier attempt had started), and post a saved reply that an
        earlier attempt died before posting.

        Raises:
            StoreUnavailable, aiohttp.ClientError, OSError: the store or Discord could not be reached; the entry is
                tried again later.
        """
        assert self._bot is not None and self._client is not None
        delivery = attempt.delivery
        msg, route = delivery.message, delivery.route
        session = self._bot.session_id(msg)
        guild_id = int(route["guild_id"]) if route.get("guild_id") else None
        channel = self._client.get_partial_messageable(int(route["channel_id"]), guild_id=guild_id)
        message = channel.get_partial_message(int(route["message_id"]))
        target: discord.abc.Messageable = channel
        # If the user deletes the message meanwhile, post without the quote rather than fail.
        reference: discord.MessageReference | None = message.to_reference(fail_if_not_exists=False)
        try:
            if route.get("open_thread"):
                thread = await self._open_thread(
                    message, msg.text, author=str(route.get("author", "")), session=session
                )
                if thread is not None:
                    target, reference = thread, None
            poster = ReplyPoster(target, reference=reference, existing=self._existing(delivery.reply_ref))
            poster.on_posted = attempt.note_reply
            text = await self._stream(msg, poster, typing_in=target)
            if not text and delivery.redelivered and attempt.holds():
                saved = await self._bot.stored_reply(msg)
                if saved is not None:
                    log.info("posting the saved reply of a redelivered message", extra={"session_id": session})
                    await poster.show(saved)
        except discord.HTTPException as exc:
            if exc.status >= 500:
                raise  # Discord is having trouble: tried again later
            log.warning("Discord refused a call for session %s: %s", session, exc, extra={"session_id": session})
        except (StoreUnavailable, ShuttingDown, aiohttp.ClientError, OSError, discord.GatewayNotFound):
            raise
        except Exception:
            log.exception("answering %s failed (session %s)", msg.event_id, session, extra={"session_id": session})
            await self._say(target, INTERNAL_ERROR_REPLY, reference=reference, session=session)

    def _existing(self, reply_ref: str | None) -> discord.PartialMessage | None:
        """The message an earlier attempt started the reply in (``channel_id/message_id``), to be finished."""
        if reply_ref is None or self._client is None:
            return None
        channel_id, _, message_id = reply_ref.partition("/")
        if not (channel_id.isdigit() and message_id.isdigit()):
            return None
        return self._client.get_partial_messageable(int(channel_id)).get_partial_message(int(message_id))

    async def _stream(self, msg: IncomingMessage, poster: ReplyPoster, *, typing_in: discord.abc.Messageable) -> str:
        """Stream the turn's reply through ``poster``; returns the whole text ("" for a turn answered before)."""
        assert self._bot is not None
        typing = asyncio.get_running_loop().create_task(keep_typing(typing_in), name=f"discord-typing-{msg.event_id}")
        text = ""
        try:
            stream = self._bot.stream(msg, from_inbox=True)
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    text += chunk
                    if poster.due():
                        await poster.show(text)
                        if poster.started:
                            typing.cancel()  # the answer is visible now; its edits show progress
            if text:  # nothing at all means a redelivery the core has answered already
                await poster.show(text)
        finally:
            typing.cancel()
            await asyncio.gather(typing, return_exceptions=True)
        return text

    async def _open_thread(
        self, message: discord.PartialMessage, text: str, *, author: str, session: str
    ) -> discord.abc.Messageable | None:
        """The thread for the conversation a mention starts, or ``None`` to answer inline instead."""
        assert self._client is not None
        guild_id = message.guild.id if message.guild is not None else None
        name = thread_name(text, fallback=f"Help for {author}" if author else "Help")
        try:
            return await message.create_thread(name=name, auto_archive_duration=THREAD_ARCHIVE_MIN)
        except discord.HTTPException as exc:
            if exc.code == THREAD_EXISTS_CODE:  # an earlier attempt opened it
                return self._client.get_partial_messageable(
                    message.id, guild_id=guild_id, type=discord.ChannelType.public_thread
                )
            log.warning("no thread for session %s, answering inline: %s", session, exc, extra={"session_id": session})
            return None

    async def _say(
        self, target: discord.abc.Messageable, text: str, *, reference: discord.MessageReference | None, session: str
    ) -> None:
        """Post a short notice; if Discord refuses, only log it."""
        try:
            await post(target, text, reference=reference)
        except discord.DiscordException as exc:
            log.warning("could not post a notice for session %s: %s", session, exc, extra={"session_id": session})
