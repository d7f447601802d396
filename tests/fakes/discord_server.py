"""A local fake of Discord (REST API + websocket gateway) that the real ``discord.py`` client talks to.

The fake serves, on one ``127.0.0.1`` port:

* the REST API under ``/api/v10`` (users, applications, channels, messages, typing, threads,
  application-command sync, interaction callbacks and interaction webhooks), recording every call;
* the gateway as a websocket on ``/gateway``: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats,
  RESUME (with replay of missed events), guild member chunk requests, and test-driven dispatches.

discord.py has no per-client base URL: both endpoints are class attributes. Point it at the fake with
:func:`discord_py_endpoints` (which restores the originals on exit)::

    async with FakeDiscord() as fake:
        with discord_py_endpoints(fake.api_url, fake.gateway_url):
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            await client.login(fake.token)
            task = asyncio.create_task(client.connect())
            ...
            await fake.dispatch("MESSAGE_CREATE", fake.message_payload(content="hi", author_id=42))
            await fake.wait_for("POST", f"/channels/{fake.channel_id}/messages")
            await client.close()
            await task

Recorded :class:`RestCall` paths are relative to ``/api/v10`` (e.g. ``/channels/4000/messages``),
without the query string (see :attr:`RestCall.query`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import re
import time
import uuid
import warnings
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl
from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.loopback import LoopbackFake, serve_on_loopback

API_PREFIX = "/api/v10"
API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
HEARTBEAT_INTERVAL_MS = 45_000

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
_THREAD_TYPES = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})

# Message types / flags / interaction response types.
MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19
MESSAGE_CHAT_INPUT_COMMAND = 20
EPHEMERAL = 1 << 6
LOADING = 1 << 7

# Permissions granted to @everyone (and so to the bot) in the fake guild.
EVERYONE_PERMISSIONS = (
    (1 << 6)  # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 18)  # USE_EXTERNAL_EMOJIS
    | (1 << 31)  # USE_APPLICATION_COMMANDS
    | (1 << 35)  # CREATE_PUBLIC_THREADS
    | (1 << 36)  # CREATE_PRIVATE_THREADS
    | (1 << 38)  # SEND_MESSAGES_IN_THREADS
)

_MENTION_RE = re.compile(r"<@!?(\d+)>")
_SHUTDOWN_TIMEOUT = 2.0
_DEFAULT: Any = object()  # "use the fake's default" sentinel for ``guild_id`` parameters

_ERRORS: dict[int, tuple[str, int]] = {
    400: ("400: Bad Request", 0),
    401: ("401: Unauthorized", 0),
    403: ("Missing Permissions", 50013),
    404: ("404: Not Found", 0),
    405: ("405: Method Not Allowed", 0),
    500: ("500: Internal Server Error", 0),
    502: ("502: Bad Gateway", 0),
}


@contextlib.contextmanager
def discord_py_endpoints(api_url: str, gateway_url: str) -> Iterator[None]:
    """Points every discord.py client in the process at ``api_url`` / ``gateway_url``, restoring on exit.

    discord.py keeps both endpoints in class attributes (there is no per-client setting):

    * ``discord.http.Route.BASE`` -- every REST route (including interaction callbacks and
      interaction webhooks, which also use ``Route``) is ``Route.BASE + path``, built when the
      ``Route`` is created;
    * ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` -- the URL ``discord.Client.connect``
      opens (``?v=10&encoding=json&compress=...`` is appended). A plain ``Client`` never calls
      ``GET /gateway/bot``; only ``AutoShardedClient`` does. Resumes go to READY's
      ``resume_gateway_url``.

    Args:
        api_url: REST base URL without a trailing slash, e.g. ``http://127.0.0.1:1234/api/v10``.
        gateway_url: Websocket URL, e.g. ``ws://127.0.0.1:1234/gateway``.

    Yields:
        Nothing; the endpoints are patched for the duration of the ``with`` block.
    """
    with warnings.catch_warnings():
        # discord.py imports the stdlib ``audioop``, deprecated since Python 3.11.
        warnings.filterwarnings("ignore", message="'audioop' is deprecated", category=DeprecationWarning)
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = api_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE = old_base
        DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@dataclass(frozen=True)
class RestCall:
    """One REST request received by the fake.

    Attributes:
        method: Upper-case HTTP method.
        path: Path relative to ``/api/v10`` (the full path for requests outside it), no query string.
        json: The parsed JSON body (for multipart requests, the parsed ``payload_json`` part), else ``None``.
        headers: Request headers with lower-cased names.
        at: ``time.monotonic()`` when the request arrived.
        query: The query string parameters.
        files: For multipart requests, ``{"name", "filename", "size"}`` of each uploaded file.
    """

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    at: float
    query: dict[str, str] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    retry_after: float
    times: int
    message: str | None
    code: int | None


@dataclass
class _Interaction:
    id: int
    token: str
    channel_id: int
    guild_id: int | None
    user_id: int
    acknowledged: bool = False
    original_id: int | None = None


class _GatewayConnection:
    """One gateway websocket, sending JSON text frames or a zlib/zstd stream."""

    def __init__(self, ws: web.WebSocketResponse, compression: str | None) -> None:
        self.ws = ws
        self.compression = compression
        self._lock = asyncio.Lock()
        self._zlib = zlib.compressobj() if compression == "zlib-stream" else None
        self._zstd: Any = None
        if compression == "zstd-stream":
            self._zstd = importlib.import_module("zstandard").ZstdCompressor().compressobj()

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                raise ConnectionResetError("gateway websocket is closed")
            if self._zlib is not None:
                # zlib-stream: one shared context per connection; each message ends with Z_SYNC_FLUSH
                # (b"\x00\x00\xff\xff"), which is how discord.py finds message boundaries.
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            elif self._zstd is not None:
                zstandard = importlib.import_module("zstandard")
                data = self._zstd.compress(text.encode()) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(text)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json" (no charset): discord.py's json_or_text compares the header verbatim.
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(body=json.dumps(payload).encode(), status=status, headers=all_headers)


def _error(status: int, message: str, code: int, *, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"message": message, "code": code}, status=status, headers=headers)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _not_found_for(path: str) -> tuple[str, int]:
    if "/interactions/" in path:
        return "Unknown Interaction", 10062
    if "/webhooks/" in path:
        return "Unknown Webhook", 10015
    if "/messages/" in path:
        return "Unknown Message", 10008
    if path.startswith("/channels/"):
        return "Unknown Channel", 10003
    return _ERRORS[404]


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true"}


Handler = Callable[[RestCall, "re.Match[str]"], Awaitable[web.Response]]


class FakeDiscord(LoopbackFake):
    """A fake Discord serving REST and a gateway on ``127.0.0.1``, for the real discord.py client.

    The fake has one guild (``guild_id``) with one text channel (``channel_id``), a bot user
    (``bot_user_id``) and an application (``application_id``). Tests drive the gateway with
    :meth:`dispatch` and inspect what the client did through :attr:`requests`, :meth:`wait_for`
    and :meth:`messages`.

    Attributes:
        requests: Every REST call, in arrival order (including failed and unknown ones).
        gateway_frames: Every payload the client sent on the gateway, in order.
        gateway_queries: The query string of every gateway connection (``v``, ``encoding``, ``compress``).
        identify: The ``d`` of the last IDENTIFY, or ``None``.
        ready: Set once READY and GUILD_CREATE were sent to an identified client.
        commands: Registered application commands by guild id (``None`` for global ones).
        echo_messages: Whether messages the client creates or edits are echoed back on the gateway
            as MESSAGE_CREATE / MESSAGE_UPDATE, as real Discord does.
    """

    def __init__(
        self,
        *,
        bot_user_id: int = 1000,
        application_id: int = 2000,
        guild_id: int = 3000,
        channel_id: int = 4000,
        token: str = "fake-token",
        echo_messages: bool = True,
        gateway_compression: bool = False,
        owner_id: int = 999,
    ) -> None:
        """Creates a stopped fake.

        Args:
            bot_user_id: The bot user's id.
            application_id: The application id (also used as interaction webhook id).
            guild_id: The fake guild's id (also the @everyone role id).
            channel_id: The guild text channel's id.
            token: The bot token REST calls and IDENTIFY must present.
            echo_messages: Echo the client's own messages back as gateway events.
            gateway_compression: Honour ``compress=zlib-stream``/``zstd-stream`` from the connect URL with
                binary compressed frames; by default the fake sends plain JSON text frames, which
                discord.py accepts whatever it asked for.
            owner_id: The guild and application owner's user id.
        """
        self.bot_user_id = bot_user_id
        self.application_id = application_id
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.token = token
        self.owner_id = owner_id
        self.echo_messages = echo_messages
        self.gateway_compression = gateway_compression
        self.requests: list[RestCall] = []
        self.gateway_frames: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.identify: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self._cond = asyncio.Condition()
        self._failures: list[_Failure] = []
        self._last_id = 0
        self._users: dict[int, dict[str, Any]] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._dm_by_user: dict[int, int] = {}
        self._announced_threads: set[int] = set()
        self._messages: dict[int, list[dict[str, Any]]] = {}
        self._message_index: dict[int, dict[str, Any]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._connections: set[_GatewayConnection] = set()
        self._conn: _GatewayConnection | None = None
        self._session_id: str | None = None
        self._seq = 0
        self._sent_events: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = self._build_routes()
        self._seed()

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_url(self) -> str:
        """The REST base URL, ``http://127.0.0.1:<port>/api/v10``."""
        return f"http://127.0.0.1:{self._require_port()}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The gateway websocket URL, ``ws://127.0.0.1:<port>/gateway``."""
        return f"ws://127.0.0.1:{self._require_port()}/gateway"

    def _require_port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeDiscord is not running; call start() first")
        return self._port

    async def start(self) -> None:
        """Binds ``127.0.0.1`` on a free port and starts serving.

        Raises:
            RuntimeError: If the server is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FakeDiscord is already running")
        app = web.Application()
        app.router.add_get("/gateway", self._handle_gateway)
        app.router.add_get("/gateway/", self._handle_gateway)
        app.router.add_route("*", "/{tail:.*}", self._handle_rest)
        runner, _, self._port = await serve_on_loopback(app, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self._runner = runner

    async def aclose(self) -> None:
        """Closes gateway sockets and stops the server. Safe to call more than once."""
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"fake shutting down")
        self._connections.clear()
        self._conn = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ model

    def _next_id(self) -> int:
        """A snowflake for "now", strictly increasing across calls."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, candidate)
        return self._last_id

    def _seed(self) -> None:
        bot = self.user(self.bot_user_id, name="supportbot", bot=True)
        bot.update({"verified": True, "mfa_enabled": False, "flags": 0, "email": None, "locale": "en-US"})
        self.user(self.owner_id, name="owner")
        self._channels[self.channel_id] = {
            "id": str(self.channel_id),
            "type": GUILD_TEXT,
            "guild_id": str(self.guild_id),
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "default_auto_archive_duration": 1440,
            "flags": 0,
        }

    def user(self, user_id: int, *, name: str | None = None, bot: bool = False) -> dict[str, Any]:
        """Returns (registering on first use) the user object for ``user_id``.

        Args:
            user_id: The user's id.
            name: Username on first registration (default ``user<id>``).
            bot: Whether the user is a bot, on first registration.

        Returns:
            The user object (the fake's own copy; mutations show up in later payloads).
        """
        existing = self._users.get(user_id)
        if existing is not None:
            return existing
        created: dict[str, Any] = {
            "id": str(user_id),
            "username": name or f"user{user_id}",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
        }
        self._users[user_id] = created
        return created

    def _member(self, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        member: dict[str, Any] = {
            "roles": [],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
        }
        if with_user:
            member["user"] = self.user(user_id)
        return member

    def channel(self, channel_id: int) -> dict[str, Any]:
        """Returns the fake's channel object for ``channel_id``.

        Raises:
            KeyError: If the channel is unknown.
        """
        return self._channels[channel_id]

    def dm_channel(self, user_id: int) -> int:
        """Registers (once) a DM channel between the bot and ``user_id`` and returns its id.

        discord.py needs nothing else to accept a MESSAGE_CREATE in a DM (a payload without
        ``guild_id`` makes it build a ``DMChannel`` from the id; it ignores CHANNEL_CREATE for DMs).
        The registration lets the fake serve ``GET /channels/{id}``, ``POST /users/@me/channels`` and
        messages posted to the DM.

        Args:
            user_id: The other user's id.

        Returns:
            The DM channel id.
        """
        existing = self._dm_by_user.get(user_id)
        if existing is not None:
            return existing
        channel_id = self._next_id()
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self.user(user_id)],
        }
        self._dm_by_user[user_id] = channel_id
        return channel_id

    def thread_channel(
        self,
        *,
        parent_id: int | None = None,
        name: str = "thread",
        owner_id: int | None = None,
        thread_id: int | None = None,
        private: bool = False,
    ) -> int:
        """Registers a thread in the guild and returns its id.

        The client learns about the thread through THREAD_CREATE, which the fake sends the first
        time a MESSAGE_CREATE in the thread is dispatched (or on the next READY's GUILD_CREATE).

        Args:
            parent_id: The parent text channel (default ``channel_id``).
            name: Thread name.
            owner_id: The thread creator (default the bot).
            thread_id: The thread id (default a fresh snowflake).
            private: A private (type 12) rather than public (type 11) thread.

        Returns:
            The thread id.
        """
        parent = parent_id if parent_id is not None else self.channel_id
        thread = thread_id if thread_id is not None else self._next_id()
        self._channels[thread] = {
            "id": str(thread),
            "type": PRIVATE_THREAD if private else PUBLIC_THREAD,
            "guild_id": str(self._guild_of(parent) or self.guild_id),
            "parent_id": str(parent),
            "owner_id": str(owner_id if owner_id is not None else self.bot_user_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now_iso(),
                "locked": False,
            },
        }
        return thread

    def _guild_of(self, channel_id: int) -> int | None:
        channel = self._channels.get(channel_id)
        if channel is None or "guild_id" not in channel:
            return None
        return int(channel["guild_id"])

    def bot_user(self) -> dict[str, Any]:
        """The bot's user object (``bot: true``)."""
        return self._users[self.bot_user_id]

    def application(self) -> dict[str, Any]:
        """The application object served by ``GET /oauth2/applications/@me`` and ``/applications/@me``."""
        return {
            "id": str(self.application_id),
            "name": "Supportbot",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": self.user(self.owner_id),
            "team": None,
            "flags": 0,
            "bot": self.bot_user(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
        }

    def guild_payload(self) -> dict[str, Any]:
        """The full guild object sent in GUILD_CREATE."""
        members = [self._member(self.bot_user_id), self._member(self.owner_id)]
        channels = [c for c in self._channels.values() if c["type"] == GUILD_TEXT and c.get("guild_id")]
        threads = [c for c in self._channels.values() if c["type"] in _THREAD_TYPES]
        return {
            "id": str(self.guild_id),
            "name": "Fake Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "roles": [
                {
                    "id": str(self.guild_id),
                    "name": "@everyone",
                    "permissions": str(EVERYONE_PERMISSIONS),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "icon": None,
                    "unicode_emoji": None,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "joined_at": _now_iso(),
            "large": False,
            "unavailable": False,
            "member_count": len(members),
            "members": members,
            "channels": channels,
            "threads": threads,
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _ready_payload(self, session_id: str, shard: list[int]) -> dict[str, Any]:
        return {
            "v": API_VERSION,
            "user": self.bot_user(),
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session_id,
            "resume_gateway_url": self.gateway_url,
            "shard": shard,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-discord"],
        }

    # ------------------------------------------------------------------ payload builders

    def message_payload(
        self,
        *,
        content: str,
        author_id: int,
        channel_id: int | None = None,
        guild_id: int | None = _DEFAULT,
        message_id: int | None = None,
        bot: bool = False,
        webhook_id: int | None = None,
        mentions: Sequence[int] = (),
        thread: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Builds a full MESSAGE_CREATE payload discord.py accepts.

        Args:
            content: Message text (include ``<@id>`` yourself if the text should show a mention).
            author_id: The author's user id (registered as a user if new).
            channel_id: Target channel. Default: the guild text channel, or for ``guild_id=None`` the
                author's DM channel (registered via :meth:`dm_channel`).
            guild_id: The guild; default: the channel's guild (``None`` for DM channels). Pass
                ``None`` for a DM.
            message_id: The message id (default a fresh snowflake).
            bot: Mark the author as a bot.
            webhook_id: Make it a webhook message (no ``member`` object).
            mentions: User ids listed in ``mentions`` as full user objects (with partial members in guilds).
            thread: Post the message in a new thread under ``channel_id`` (or the default channel);
                the thread is announced with THREAD_CREATE when the payload is dispatched.
            extra: Keys merged into the payload last (e.g. ``message_reference``).

        Returns:
            The payload (the ``d`` of a MESSAGE_CREATE).
        """
        if guild_id is None:
            channel = channel_id if channel_id is not None else self.dm_channel(author_id)
        else:
            channel = channel_id if channel_id is not None else self.channel_id
            if thread:
                channel = self.thread_channel(parent_id=channel, owner_id=author_id)
            if guild_id is _DEFAULT:
                guild_id = self._guild_of(channel)
        author = dict(self.user(author_id, bot=bot))
        author["bot"] = bot or author.get("bot", False)
        payload = self._message_object(
            message_id=message_id if message_id is not None else self._next_id(),
            channel_id=channel,
            author=author,
            content=content,
            mention_ids=mentions,
        )
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            if webhook_id is None:
                payload["member"] = self._member(author_id, with_user=False)
            for mention in payload["mentions"]:
                mention["member"] = self._member(int(mention["id"]), with_user=False)
        if webhook_id is not None:
            payload["webhook_id"] = str(webhook_id)
        if extra:
            payload.update(extra)
        return payload

    def _message_object(
        self,
        *,
        message_id: int,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        mention_ids: Sequence[int] = (),
    ) -> dict[str, Any]:
        return {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [dict(self.user(uid)) for uid in dict.fromkeys(mention_ids)],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "reactions": [],
            "pinned": False,
            "type": MESSAGE_DEFAULT,
            "flags": 0,
        }

    def interaction_payload(
        self,
        *,
        name: str,
        user_id: int = 5000,
        channel_id: int | None = None,
        guild_id: int | None = _DEFAULT,
        options: list[dict[str, Any]] | None = None,
        interaction_id: int | None = None,
        token: str | None = None,
        command_type: int = 1,
    ) -> dict[str, Any]:
        """Builds an INTERACTION_CREATE payload for an application command (interaction type 2).

        The command id is the one assigned when the command was synced (``PUT .../commands``);
        for guild-synced commands ``data.guild_id`` is set, which discord.py's ``CommandTree``
        needs to find guild commands.

        Args:
            name: The command name.
            user_id: The invoking user.
            channel_id: Channel it was invoked in (default: the guild text channel, or the user's DM
                channel when ``guild_id=None``).
            guild_id: The guild (default the fake's guild); ``None`` for a DM invocation.
            options: ``data.options`` (e.g. ``[{"name": "q", "type": 3, "value": "vpn"}]``).
            interaction_id: The interaction id (default a fresh snowflake).
            token: The interaction token (default ``itoken-<id>``).
            command_type: ``data.type`` (1 chat input, 2 user, 3 message).

        Returns:
            The payload (the ``d`` of an INTERACTION_CREATE); the fake remembers id/token/channel so
            the callback and ``@original`` webhook routes work.
        """
        if guild_id is _DEFAULT:
            guild_id = self.guild_id
        iid = interaction_id if interaction_id is not None else self._next_id()
        itoken = token if token is not None else f"itoken-{iid}"
        if guild_id is None:
            channel = channel_id if channel_id is not None else self.dm_channel(user_id)
        else:
            channel = channel_id if channel_id is not None else self.channel_id
        data: dict[str, Any] = {"id": str(self._next_id()), "name": name, "type": command_type}
        command = self._find_command(name, guild_id)
        if command is not None:
            data["id"] = command["id"]
            if command.get("guild_id"):
                data["guild_id"] = command["guild_id"]
        if options:
            data["options"] = options
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": 2,
            "token": itoken,
            "version": 1,
            "data": data,
            "channel_id": str(channel),
            "channel": dict(self._channels.get(channel, {"id": str(channel), "type": GUILD_TEXT})),
            "locale": "en-US",
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "entitlements": [],
            "attachment_size_limit": 8 * 1024 * 1024,
        }
        if guild_id is None:
            payload["user"] = self.user(user_id)
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": str(self.owner_id)}
        else:
            member = self._member(user_id)
            member["permissions"] = str(EVERYONE_PERMISSIONS)
            payload.update(
                guild_id=str(guild_id),
                guild={"id": str(guild_id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=member,
                context=0,
                authorizing_integration_owners={"0": str(guild_id)},
            )
        self._interactions[itoken] = _Interaction(
            id=iid, token=itoken, channel_id=channel, guild_id=guild_id, user_id=user_id
        )
        return payload

    def _find_command(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        return None

    # ------------------------------------------------------------------ test-facing helpers

    def messages(self, channel_id: int) -> list[dict[str, Any]]:
        """The messages the client created in ``channel_id`` (REST, interaction responses, followups).

        Edits are applied in place; deleted messages are removed. Messages dispatched by the test
        (MESSAGE_CREATE) are not included.
        """
        return list(self._messages.get(channel_id, []))

    def calls(self, method: str, path_prefix: str) -> list[RestCall]:
        """The recorded calls matching ``method`` (``"*"`` for any) and ``path_prefix``."""
        wanted = method.upper()
        return [c for c in self.requests if (wanted in ("*", c.method)) and c.path.startswith(path_prefix)]

    async def wait_for(self, method: str, path_prefix: str, count: int = 1, timeout: float = 60.0) -> list[RestCall]:
        """Waits until at least ``count`` calls match, then returns all matching calls.

        Args:
            method: HTTP method (case-insensitive), or ``"*"``.
            path_prefix: Prefix of :attr:`RestCall.path` (relative to ``/api/v10``).
            count: How many matching calls to wait for.
            timeout: Seconds to wait.

        Returns:
            The matching calls in arrival order (at least ``count``).

        Raises:
            AssertionError: On timeout, listing the calls seen so far.
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._cond:
                    await self._cond.wait_for(lambda: len(self.calls(method, path_prefix)) >= count)
        except TimeoutError:
            seen = [f"{c.method} {c.path}" for c in self.requests]
            raise AssertionError(
                f"timed out after {timeout}s waiting for {count} x {method} {path_prefix}; seen: {seen}"
            ) from None
        return self.calls(method, path_prefix)

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int,
        retry_after: float | None = None,
        times: int = 1,
        message: str | None = None,
        code: int | None = None,
    ) -> None:
        """Makes the next ``times`` matching REST calls fail with ``status``.

        ``429`` answers ``{"message": "You are being rate limited.", "retry_after": x, "global": false}``
        with ``Retry-After``, ``X-RateLimit-*`` and ``Via`` headers (discord.py treats a 429 without
        ``Via`` as a Cloudflare ban and raises instead of retrying). Other statuses answer Discord's
        error JSON ``{"message", "code"}`` (403 ``Missing Permissions``/50013, 404 ``Unknown ...``).
        Note discord.py retries 500/502/504 itself after sleeping 1 s, 3 s, ...

        Args:
            method: HTTP method (case-insensitive), or ``"*"``.
            path_prefix: Prefix of the path relative to ``/api/v10``.
            status: HTTP status to answer.
            retry_after: Seconds for 429 (default 0.05).
            times: How many matching calls fail.
            message: Override the error ``message``.
            code: Override the error ``code``.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        self._failures.append(
            _Failure(
                method=method.upper(),
                path_prefix=path_prefix,
                status=status,
                retry_after=0.05 if retry_after is None else retry_after,
                times=times,
                message=message,
                code=code,
            )
        )

    # ------------------------------------------------------------------ gateway

    @property
    def connected(self) -> bool:
        """Whether an identified (or resumed) client is connected to the gateway."""
        return self._conn is not None and not self._conn.ws.closed

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Sends ``{"op": 0, "t": event, "s": seq, "d": data}`` to the connected client.

        A MESSAGE_CREATE in a thread the client has not heard of is preceded by THREAD_CREATE.
        While the client is reconnecting the event is kept and replayed on RESUME.

        Raises:
            RuntimeError: If no client ever identified.
        """
        if self._session_id is None:
            raise RuntimeError("no client has identified on the gateway yet")
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and "channel_id" in data:
            await self._announce_thread(int(data["channel_id"]))
        await self._send_event(event, data)

    async def add_thread_member(self, thread_id: int, user_id: int | None = None) -> None:
        """Adds ``user_id`` (default the bot) to a thread and sends THREAD_MEMBERS_UPDATE, as Discord does.

        Discord tells a bot without the members intent only about its own membership; discord.py then sets
        ``Thread.me``. The thread is announced first if the client has not heard of it.

        Args:
            thread_id: A thread registered with :meth:`thread_channel`.
            user_id: The member to add.

        Raises:
            KeyError: If the thread is unknown.
        """
        thread = self._channels[thread_id]
        member = user_id if user_id is not None else self.bot_user_id
        await self._announce_thread(thread_id)
        thread["member_count"] = int(thread.get("member_count") or 0) + 1
        added = {"id": str(thread_id), "user_id": str(member), "join_timestamp": _now_iso(), "flags": 0}
        await self.dispatch(
            "THREAD_MEMBERS_UPDATE",
            {
                "id": str(thread_id),
                "guild_id": thread["guild_id"],
                "member_count": thread["member_count"],
                "added_members": [added],
                "removed_member_ids": [],
            },
        )

    async def _announce_thread(self, channel_id: int) -> None:
        channel = self._channels.get(channel_id)
        if channel is None or channel["type"] not in _THREAD_TYPES or channel_id in self._announced_threads:
            return
        self._announced_threads.add(channel_id)
        await self._send_event("THREAD_CREATE", {**channel, "newly_created": True})

    async def _send_event(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        payload = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._sent_events.append(payload)
        conn = self._conn
        if conn is None:
            return  # replayed on RESUME
        try:
            await conn.send(payload)
        except ConnectionResetError:
            return

    async def disconnect(self, *, code: int = 4000) -> None:
        """Closes the current gateway socket with ``code`` (discord.py then RESUMEs for 4000)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.ws.close(code=code, message=b"fake disconnect")

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.gateway_queries.append(dict(request.query))
        requested = request.query.get("compress")
        compression = requested if self.gateway_compression and requested in ("zlib-stream", "zstd-stream") else None
        if compression == "zstd-stream" and importlib.util.find_spec("zstandard") is None:
            compression = None
        conn = _GatewayConnection(ws, compression)
        self._connections.add(conn)
        try:
            await conn.send({"op": 10, "s": None, "t": None, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._on_gateway_frame(conn, json.loads(msg.data))
        except ConnectionResetError:
            pass
        finally:
            self._connections.discard(conn)
            if self._conn is conn:
                self._conn = None
        return ws

    async def _on_gateway_frame(self, conn: _GatewayConnection, frame: dict[str, Any]) -> None:
        self.gateway_frames.append(frame)
        op = frame.get("op")
        raw = frame.get("d")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if op == 1:
            await conn.send({"op": 11, "s": None, "t": None, "d": None})
        elif op == 2:
            await self._on_identify(conn, data)
        elif op == 6:
            await self._on_resume(conn, data)
        elif op == 8:
            await self._on_request_members(conn, data)

    async def _on_identify(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify = data
        if self._conn is not None and self._conn is not conn:
            with contextlib.suppress(Exception):
                await self._conn.ws.close(code=4000)
        self._session_id = uuid.uuid4().hex
        self._seq = 0
        self._sent_events.clear()
        self._conn = conn
        shard = data.get("shard") or [0, 1]
        await self._send_event("READY", self._ready_payload(self._session_id, list(shard)))
        threads = {c_id for c_id, c in self._channels.items() if c["type"] in _THREAD_TYPES}
        self._announced_threads = threads
        await self._send_event("GUILD_CREATE", self.guild_payload())
        self.ready.set()

    async def _on_resume(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token or data.get("session_id") != self._session_id:
            await conn.send({"op": 9, "s": None, "t": None, "d": False})
            return
        self._conn = conn
        last_seq = data.get("seq") or 0
        for payload in [p for p in self._sent_events if p["s"] > last_seq]:
            await conn.send(payload)
        await self._send_event("RESUMED", {"_trace": ["fake-discord"]})

    async def _on_request_members(self, conn: _GatewayConnection, data: dict[str, Any]) -> None:
        members = [self._member(self.bot_user_id), self._member(self.owner_id)]
        chunk = {
            "guild_id": str(data.get("guild_id", self.guild_id)),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await self._send_event("GUILD_MEMBERS_CHUNK", chunk)

    # ------------------------------------------------------------------ REST plumbing

    async def _record(self, request: web.Request) -> RestCall:
        path = request.path
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX) :] or "/"
        body: Any = None
        files: list[dict[str, Any]] = []
        if request.content_type == "application/json":
            raw = await request.read()
            body = json.loads(raw) if raw else None
        elif request.content_type.startswith("multipart/"):
            body, files = await self._read_multipart(request)
        call = RestCall(
            method=request.method.upper(),
            path=path,
            json=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            at=time.monotonic(),
            query=dict(request.query),
            files=files,
        )
        self.requests.append(call)
        async with self._cond:
            self._cond.notify_all()
        return call

    @staticmethod
    async def _read_multipart(request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        body: Any = None
        files: list[dict[str, Any]] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            if part.name == "payload_json":
                body = json.loads(data)
            else:
                files.append({"name": part.name, "filename": part.filename, "size": len(data)})
        return body, files

    def _take_failure(self, call: RestCall) -> _Failure | None:
        for failure in self._failures:
            if failure.method in ("*", call.method) and call.path.startswith(failure.path_prefix):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    @staticmethod
    def _failure_response(failure: _Failure, path: str) -> web.Response:
        if failure.status == 429:
            retry = failure.retry_after
            body = {
                "message": failure.message or "You are being rate limited.",
                "retry_after": retry,
                "global": False,
            }
            if failure.code is not None:
                body["code"] = failure.code
            headers = {
                "Retry-After": str(max(1, int(retry + 0.999))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
                "X-RateLimit-Reset-After": f"{retry:.3f}",
                "X-RateLimit-Bucket": "fake-bucket",
                "X-RateLimit-Scope": "user",
                "Via": "1.1 google",
            }
            return _json(body, status=429, headers=headers)
        default = _not_found_for(path) if failure.status == 404 else _ERRORS.get(failure.status, ("Error", 0))
        return _error(
            failure.status,
            failure.message or default[0],
            failure.code if failure.code is not None else default[1],
        )

    def _authorized(self, call: RestCall) -> bool:
        if call.path.startswith(("/interactions/", "/webhooks/")):
            return True  # authenticated by the interaction/webhook token in the path
        return call.headers.get("authorization") == f"Bot {self.token}"

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        failure = self._take_failure(call)
        if failure is not None:
            return self._failure_response(failure, call.path)
        if not request.path.startswith(API_PREFIX + "/"):
            return _error(404, *_ERRORS[404])
        if not self._authorized(call):
            return _error(401, *_ERRORS[401])
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(call.path)
            if match is None:
                continue
            if method != call.method:
                continue
            return await handler(call, match)
        return _error(404, *_ERRORS[404])

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway),
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/users/(?P<uid>\d+)", self._get_user),
            ("GET", r"/oauth2/applications/@me", self._get_application),
            ("GET", r"/applications/@me", self._get_application),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/channels/(?P<cid>\d+)", self._get_channel),
            ("GET", r"/channels/(?P<cid>\d+)/messages", self._list_messages),
            ("POST", r"/channels/(?P<cid>\d+)/messages", self._create_message),
            ("GET", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._get_message),
            ("PATCH", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._edit_message),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._delete_message),
            ("POST", r"/channels/(?P<cid>\d+)/typing", self._typing),
            ("PUT", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/reactions/[^/]+/@me", self._reaction),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/reactions/[^/]+/@me", self._reaction),
            ("POST", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/threads", self._thread_from_message),
            ("POST", r"/channels/(?P<cid>\d+)/threads", self._thread_without_message),
            ("PUT", r"/channels/(?P<cid>\d+)/thread-members/@me", self._join_thread),
            ("GET", r"/applications/(?P<app>\d+)/commands", self._get_commands),
            ("PUT", r"/applications/(?P<app>\d+)/commands", self._put_commands),
            ("GET", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", self._get_commands),
            ("PUT", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", self._put_commands),
            ("POST", r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback", self._interaction_callback),
            ("POST", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", self._followup),
            ("GET", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)", self._get_wh_msg),
            ("PATCH", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)", self._edit_wh_msg),
            ("DELETE", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)", self._del_wh_msg),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    # ------------------------------------------------------------------ REST: users, apps, gateway

    async def _get_gateway(self, call: RestCall, match: re.Match[str]) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _get_me(self, call: RestCall, match: re.Match[str]) -> web.Response:
        return _json(self.bot_user())

    async def _get_user(self, call: RestCall, match: re.Match[str]) -> web.Response:
        return _json(self.user(int(match["uid"])))

    async def _get_application(self, call: RestCall, match: re.Match[str]) -> web.Response:
        return _json(self.application())

    async def _create_dm(self, call: RestCall, match: re.Match[str]) -> web.Response:
        recipient = (call.json or {}).get("recipient_id")
        if recipient is None:
            return _error(400, "Invalid Form Body", 50035)
        return _json(self._channels[self.dm_channel(int(recipient))])

    # ------------------------------------------------------------------ REST: channels and messages

    async def _get_channel(self, call: RestCall, match: re.Match[str]) -> web.Response:
        channel = self._channels.get(int(match["cid"]))
        if channel is None:
            return _error(404, "Unknown Channel", 10003)
        return _json(channel)

    async def _list_messages(self, call: RestCall, match: re.Match[str]) -> web.Response:
        channel_id = int(match["cid"])
        if channel_id not in self._channels:
            return _error(404, "Unknown Channel", 10003)
        limit = int(call.query.get("limit", "50"))
        newest_first = list(reversed(self._messages.get(channel_id, [])))
        return _json(newest_first[:limit])

    def _build_sent_message(self, channel_id: int, body: dict[str, Any], call: RestCall) -> dict[str, Any]:
        content = body.get("content") or ""
        message = self._message_object(
            message_id=self._next_id(),
            channel_id=channel_id,
            author=dict(self.bot_user()),
            content=content,
            mention_ids=[int(uid) for uid in _MENTION_RE.findall(content)],
        )
        message["embeds"] = body.get("embeds") or []
        message["components"] = body.get("components") or []
        message["flags"] = int(body.get("flags") or 0)
        message["tts"] = bool(body.get("tts", False))
        message["attachments"] = [
            {
                "id": str(self._next_id()),
                "filename": f.get("filename") or "file",
                "size": f["size"],
                "url": f"https://cdn.example.invalid/{f.get('filename')}",
                "proxy_url": f"https://cdn.example.invalid/{f.get('filename')}",
            }
            for f in call.files
        ]
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        reference = body.get("message_reference")
        if reference:
            message["type"] = MESSAGE_REPLY
            message["message_reference"] = reference
            referenced = self._message_index.get(int(reference.get("message_id") or 0))
            message["referenced_message"] = referenced
        return message

    async def _create_message(self, call: RestCall, match: re.Match[str]) -> web.Response:
        channel_id = int(match["cid"])
        if channel_id not in self._channels:
            return _error(404, "Unknown Channel", 10003)
        body = call.json or {}
        if not (body.get("content") or body.get("embeds") or call.files or body.get("sticker_ids")):
            if not (body.get("components") or body.get("poll")):
                return _error(400, "Cannot send an empty message", 50006)
        message = self._build_sent_message(channel_id, body, call)
        await self._store_message(message)
        return _json(message)

    async def _store_message(self, message: dict[str, Any]) -> None:
        channel_id = int(message["channel_id"])
        self._messages.setdefault(channel_id, []).append(message)
        self._message_index[int(message["id"])] = message
        channel = self._channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = message["id"]
        await self._echo("MESSAGE_CREATE", message)

    async def _echo(self, event: str, message: dict[str, Any]) -> None:
        if not self.echo_messages or self._session_id is None or int(message.get("flags") or 0) & EPHEMERAL:
            return
        payload = dict(message)
        guild_id = self._guild_of(int(message["channel_id"]))
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            if not payload.get("webhook_id"):
                payload["member"] = self._member(int(message["author"]["id"]), with_user=False)
        await self.dispatch(event, payload)

    def _lookup_message(self, match: re.Match[str]) -> dict[str, Any] | None:
        message = self._message_index.get(int(match["mid"]))
        if message is None or message["channel_id"] != match["cid"]:
            return None
        return message

    async def _get_message(self, call: RestCall, match: re.Match[str]) -> web.Response:
        message = self._lookup_message(match)
        return _json(message) if message is not None else _error(404, "Unknown Message", 10008)

    def _apply_edit(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("content", "embeds", "components", "flags"):
            if key in body and body[key] is not None:
                message[key] = body[key]
        if "content" in body:
            content = body.get("content") or ""
            message["mentions"] = [dict(self.user(int(u))) for u in dict.fromkeys(_MENTION_RE.findall(content))]
        if "attachments" in body:
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
        message["edited_timestamp"] = _now_iso()

    async def _edit_message(self, call: RestCall, match: re.Match[str]) -> web.Response:
        message = self._lookup_message(match)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        if message["author"]["id"] != str(self.bot_user_id):
            return _error(403, "Cannot edit a message authored by another user", 50005)
        self._apply_edit(message, call.json or {})
        await self._echo("MESSAGE_UPDATE", message)
        return _json(message)

    async def _delete_message(self, call: RestCall, match: re.Match[str]) -> web.Response:
        message = self._lookup_message(match)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        self._forget_message(message)
        return _no_content()

    def _forget_message(self, message: dict[str, Any]) -> None:
        self._message_index.pop(int(message["id"]), None)
        stored = self._messages.get(int(message["channel_id"]), [])
        if message in stored:
            stored.remove(message)

    async def _typing(self, call: RestCall, match: re.Match[str]) -> web.Response:
        if int(match["cid"]) not in self._channels:
            return _error(404, "Unknown Channel", 10003)
        return _no_content()

    async def _reaction(self, call: RestCall, match: re.Match[str]) -> web.Response:
        return _no_content()

    # ------------------------------------------------------------------ REST: threads

    async def _thread_from_message(self, call: RestCall, match: re.Match[str]) -> web.Response:
        parent_id, message_id = int(match["cid"]), int(match["mid"])
        parent = self._channels.get(parent_id)
        if parent is None:
            return _error(404, "Unknown Channel", 10003)
        if parent["type"] != GUILD_TEXT or "guild_id" not in parent:
            return _error(400, "Cannot execute action on this channel type", 50024)
        if message_id in self._channels:
            return _error(400, "A thread has already been created for this message", 160004)
        # Like Discord, a thread started from a message has the message's id.
        return await self._new_thread(call, parent_id, thread_id=message_id, private=False)

    async def _thread_without_message(self, call: RestCall, match: re.Match[str]) -> web.Response:
        parent_id = int(match["cid"])
        parent = self._channels.get(parent_id)
        if parent is None:
            return _error(404, "Unknown Channel", 10003)
        private = int((call.json or {}).get("type") or PRIVATE_THREAD) == PRIVATE_THREAD
        return await self._new_thread(call, parent_id, thread_id=None, private=private)

    async def _new_thread(
        self, call: RestCall, parent_id: int, *, thread_id: int | None, private: bool
    ) -> web.Response:
        body = call.json or {}
        thread_id = self.thread_channel(
            parent_id=parent_id, name=body.get("name") or "thread", thread_id=thread_id, private=private
        )
        thread = self._channels[thread_id]
        if body.get("auto_archive_duration"):
            thread["thread_metadata"]["auto_archive_duration"] = int(body["auto_archive_duration"])
        if body.get("rate_limit_per_user") is not None:
            thread["rate_limit_per_user"] = int(body["rate_limit_per_user"])
        if self._session_id is not None:
            await self._announce_thread(thread_id)  # Discord sends THREAD_CREATE to the creator too
        return _json(thread, status=201)

    async def _join_thread(self, call: RestCall, match: re.Match[str]) -> web.Response:
        channel = self._channels.get(int(match["cid"]))
        if channel is None or channel["type"] not in _THREAD_TYPES:
            return _error(404, "Unknown Channel", 10003)
        return _no_content()

    # ------------------------------------------------------------------ REST: application commands

    @staticmethod
    def _scope(match: re.Match[str]) -> int | None:
        gid = match.groupdict().get("gid")
        return int(gid) if gid is not None else None

    async def _get_commands(self, call: RestCall, match: re.Match[str]) -> web.Response:
        return _json(self.commands.get(self._scope(match), []))

    async def _put_commands(self, call: RestCall, match: re.Match[str]) -> web.Response:
        if int(match["app"]) != self.application_id:
            return _error(403, "Missing Access", 50001)
        scope = self._scope(match)
        previous = {c["name"]: c for c in self.commands.get(scope, [])}
        registered: list[dict[str, Any]] = []
        for command in call.json or []:
            old = previous.get(command.get("name"))
            stored: dict[str, Any] = {
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                **command,
                "id": old["id"] if old is not None else str(self._next_id()),
                "application_id": str(self.application_id),
                "version": str(self._next_id()),
            }
            if scope is not None:
                stored["guild_id"] = str(scope)
            registered.append(stored)
        self.commands[scope] = registered
        return _json(registered)

    # ------------------------------------------------------------------ REST: interactions and webhooks

    def _interaction_for(self, token: str, interaction_id: int | None = None) -> _Interaction:
        found = self._interactions.get(token)
        if found is None:
            # Unknown (not built by interaction_payload): accept it, in the default channel.
            found = _Interaction(
                id=interaction_id or self._next_id(),
                token=token,
                channel_id=self.channel_id,
                guild_id=self.guild_id,
                user_id=self.owner_id,
            )
            self._interactions[token] = found
        return found

    def _webhook_message(self, interaction: _Interaction, data: dict[str, Any], *, loading: bool) -> dict[str, Any]:
        message = self._build_sent_message(interaction.channel_id, data, RestCall("POST", "", data, {}, 0.0))
        message["webhook_id"] = str(self.application_id)
        message["application_id"] = str(self.application_id)
        if loading:
            message["flags"] = int(message["flags"]) | LOADING
        message["interaction_metadata"] = {
            "id": str(interaction.id),
            "type": 2,
            "user": self.user(interaction.user_id),
            "authorizing_integration_owners": {},
        }
        return message

    async def _interaction_callback(self, call: RestCall, match: re.Match[str]) -> web.Response:
        interaction = self._interaction_for(match["token"], int(match["iid"]))
        if interaction.acknowledged:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        interaction.acknowledged = True
        body = call.json or {}
        response_type = int(body.get("type") or 0)
        data = body.get("data") or {}
        message: dict[str, Any] | None = None
        if response_type in (4, 5):  # CHANNEL_MESSAGE_WITH_SOURCE / DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
            message = self._webhook_message(interaction, data, loading=response_type == 5)
            interaction.original_id = int(message["id"])
            await self._store_message(message)
        if not _is_true(call.query.get("with_response")):
            return _no_content()
        flags = int(data.get("flags") or 0)
        result: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": 2,
                "response_message_loading": response_type == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": {"type": response_type},
        }
        if message is not None:
            result["interaction"]["response_message_id"] = message["id"]
            result["resource"]["message"] = message
        return _json(result)

    def _wh_target(self, match: re.Match[str]) -> tuple[_Interaction, dict[str, Any] | None]:
        interaction = self._interaction_for(match["token"])
        mid = match["mid"]
        message_id = interaction.original_id if mid == "@original" else int(mid)
        return interaction, self._message_index.get(message_id) if message_id is not None else None

    async def _followup(self, call: RestCall, match: re.Match[str]) -> web.Response:
        interaction = self._interaction_for(match["token"])
        message = self._webhook_message(interaction, call.json or {}, loading=False)
        await self._store_message(message)
        return _json(message) if _is_true(call.query.get("wait")) else _no_content()

    async def _get_wh_msg(self, call: RestCall, match: re.Match[str]) -> web.Response:
        _, message = self._wh_target(match)
        return _json(message) if message is not None else _error(404, "Unknown Message", 10008)

    async def _edit_wh_msg(self, call: RestCall, match: re.Match[str]) -> web.Response:
        interaction, message = self._wh_target(match)
        if message is None:
            if match["mid"] != "@original":
                return _error(404, "Unknown Message", 10008)
            # Editing @original before any message exists creates it (as after a type 6 defer).
            message = self._webhook_message(interaction, call.json or {}, loading=False)
            interaction.original_id = int(message["id"])
            await self._store_message(message)
            return _json(message)
        self._apply_edit(message, call.json or {})
        message["flags"] = int(message["flags"]) & ~LOADING
        await self._echo("MESSAGE_UPDATE", message)
        return _json(message)

    async def _del_wh_msg(self, call: RestCall, match: re.Match[str]) -> web.Response:
        _, message = self._wh_target(match)
        if message is None:
            return _error(404, "Unknown Message", 10008)
        self._forget_message(message)
        return _no_content()


__all__ = [
    "API_PREFIX",
    "EPHEMERAL",
    "EVERYONE_PERMISSIONS",
    "FakeDiscord",
    "RestCall",
    "discord_py_endpoints",
]
