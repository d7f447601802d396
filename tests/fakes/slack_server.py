"""A local fake of Slack's Web API and Socket Mode, served over real HTTP and websockets for tests.

The real ``slack_sdk.web.async_client.AsyncWebClient`` talks to it through ``base_url=fake.api_url``, and
slack_bolt's ``AsyncSocketModeHandler`` connects to its websocket because ``apps.connections.open`` (called with
the handler's web client, which defaults to ``app.client``) answers with the fake's ``ws://`` URL.

The fake records every Web API call, keeps a per-channel view of the messages it knows (posted, updated and
streamed by the bot, seeded with :meth:`FakeSlack.add_message`, or carried by events sent with
:meth:`FakeSlack.push_event`), and can be told to fail the next calls of a method.

Example:
    ```python
    async with FakeSlack() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert fake.messages("C1")[0]["text"] == "hi"
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.loopback import LoopbackFake, serve_on_loopback

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
MAX_MESSAGE_CHARS = 40_000
"""``chat.postMessage``/``chat.update`` answer ``msg_too_long`` above this many characters of ``text``."""
MAX_STREAM_CHUNK_CHARS = 12_000
"""The streaming methods answer ``msg_too_long`` when one markdown piece is longer than this."""
STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
APP_ID = "A1"
BOT_ID = "BBOT"

# Arguments whose form-encoded value is JSON text, as Slack accepts them.
_JSON_ARGS = frozenset({"attachments", "blocks", "chunks", "metadata", "prompts", "unfurls", "view"})
# Keys of the fake's message view that Slack's own message objects do not have.
_FAKE_ONLY_KEYS = ("channel", "streaming")
_SHUTDOWN_TIMEOUT = 2.0
_WS_CLOSE_TIMEOUT = 2.0

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class SlackCall:
    """One Web API call as received by the fake.

    Attributes:
        method: The API method, e.g. ``"chat.postMessage"``.
        args: Query string, form and JSON body arguments merged (body wins); JSON-valued form fields such as
            ``blocks`` are parsed.
        headers: The request headers, with lower-cased names.
        at: ``time.monotonic()`` when the call arrived.
    """

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def token(self) -> str | None:
        """The ``Authorization: Bearer`` token, else a ``token`` argument, else ``None``."""
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        token = self.args.get("token")
        return token if isinstance(token, str) and token else None


class SlackError(Exception):
    """A Slack error answer: ``{"ok": false, "error": error}`` with an HTTP status and extra headers."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None


def _json_response(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": JSON_CONTENT_TYPE}
    all_headers.update(headers or {})
    return web.Response(body=json.dumps(payload).encode(), status=status, headers=all_headers)


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int(fraction or 0)


def _decode_form_value(key: str, value: Any) -> Any:
    if isinstance(value, web.FileField):
        return {"filename": value.filename, "content_type": value.content_type, "content": value.file.read()}
    if key in _JSON_ARGS and isinstance(value, str) and value[:1] in ("[", "{"):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merges the query string and a JSON, form-encoded or multipart body into one dict."""
    args: dict[str, Any] = dict(request.query)
    if not request.body_exists:
        return args
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise SlackError("invalid_json") from exc
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        args.update(body)
    else:
        form = await request.post()
        args.update({key: _decode_form_value(key, value) for key, value in form.items()})
    return args


def _markdown_of(args: dict[str, Any]) -> str:
    """The text a streaming call adds: ``markdown_text`` followed by the text of ``markdown_text`` chunks."""
    pieces: list[str] = []
    markdown = args.get("markdown_text")
    if isinstance(markdown, str):
        pieces.append(markdown)
    chunks = args.get("chunks")
    if isinstance(chunks, list):
        pieces.extend(
            chunk["text"]
            for chunk in chunks
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text" and isinstance(chunk.get("text"), str)
        )
    if any(len(piece) > MAX_STREAM_CHUNK_CHARS for piece in pieces):
        raise SlackError("msg_too_long")
    return "".join(pieces)


def _required(args: dict[str, Any], name: str, error: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise SlackError(error)
    return value


def _limit(args: dict[str, Any], default: int) -> int:
    try:
        limit = int(args.get("limit") or default)
    except (TypeError, ValueError):
        return default
    return limit if limit > 0 else default


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A message as Slack's API shows it: no fake-only keys, no ``thread_ts`` on top-level messages."""
    shown = {k: copy.deepcopy(v) for k, v in message.items() if k not in _FAKE_ONLY_KEYS}
    if shown.get("thread_ts") is None:
        shown.pop("thread_ts", None)
    return shown


class FakeSlack(LoopbackFake):
    """An in-process fake Slack workspace: Web API under ``/api/`` and a Socket Mode websocket at ``/socket``.

    Attributes:
        calls: Every Web API call, in arrival order (failed ones too).
        envelopes: Every Socket Mode envelope sent by :meth:`push_event`.
        acks: Every acknowledgement (a JSON object with ``envelope_id``) received over Socket Mode.
        socket_connected: Set once a Socket Mode client has connected and been sent ``hello``; cleared when the
            last one disconnects.
    """

    def __init__(
        self,
        *,
        bot_user_id: str = "UBOT",
        team_id: str = "T1",
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
    ) -> None:
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.calls: list[SlackCall] = []
        self.envelopes: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.socket_connected = asyncio.Event()
        self._messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._streaming_enabled = True
        self._ts_epoch = int(time.time())
        self._ts_counter = 0
        self._view_counter = 0
        self._calls_changed = asyncio.Event()
        self._holds: dict[str, asyncio.Event] = {}
        self._applied_holds: set[str] = set()
        self.held: dict[str, asyncio.Event] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._runner: web.AppRunner | None = None
        self._origin: str | None = None
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "views.open": self._views_open,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>/api/``, the ``base_url`` for ``AsyncWebClient``.

        Raises:
            RuntimeError: If the fake is not running.
        """
        return f"{self._require_origin()}/api/"

    @property
    def socket_url(self) -> str:
        """``ws://127.0.0.1:<port>/socket``, the URL ``apps.connections.open`` hands out."""
        return self._require_origin().replace("http://", "ws://", 1) + "/socket"

    def _require_origin(self) -> str:
        if self._origin is None:
            raise RuntimeError("FakeSlack is not running; call start() first")
        return self._origin

    async def start(self) -> str:
        """Binds ``127.0.0.1`` on a free port and starts serving.

        Returns:
            :attr:`api_url`.

        Raises:
            RuntimeError: If the fake is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FakeSlack is already running")
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/socket", self._handle_socket)
        runner, host, port = await serve_on_loopback(app, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self._runner = runner
        self._origin = f"http://{host}:{port}"
        return self.api_url

    async def aclose(self) -> None:
        """Closes the Socket Mode websockets, releases :meth:`push_event` waiters and stops the server.

        Safe to call more than once, and before :meth:`start`.
        """
        for future in self._ack_waiters.values():
            if not future.done():
                future.set_result(None)
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ test controls and inspection

    def calls_to(self, method: str) -> list[SlackCall]:
        """The recorded calls of ``method``, in arrival order."""
        return [call for call in self.calls if call.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 60.0) -> list[SlackCall]:
        """Waits until at least ``count`` calls of ``method`` have been answered.

        Returns:
            All calls of ``method`` so far.

        Raises:
            TimeoutError: If fewer than ``count`` arrived within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                while len(self.calls_to(method)) < count:
                    await self._calls_changed.wait()
        except TimeoutError:
            seen = [call.method for call in self.calls]
            got = len(self.calls_to(method))
            raise TimeoutError(
                f"expected {count} call(s) of {method} within {timeout}s, got {got}; calls so far: {seen}"
            ) from None
        return self.calls_to(method)

    def fail_next(
        self,
        method: str,
        error: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
        status: int = 200,
    ) -> None:
        """Makes the next ``times`` calls of ``method`` answer ``{"ok": false, "error": error}``.

        ``error="ratelimited"`` answers HTTP 429 (unless another non-200 ``status`` is given) with
        ``Retry-After: <retry_after or 1>``, as Slack does. Other errors carry ``Retry-After`` only if
        ``retry_after`` is given. Failures queue up behind ones already queued for the same method.

        Raises:
            ValueError: If ``times`` is less than 1.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if error == "ratelimited":
            status = 429 if status == 200 else status
            retry_after = 1 if retry_after is None else retry_after
        for _ in range(times):
            self._failures[method].append(_Failure(error=error, status=status, retry_after=retry_after))

    def hold(self, method: str, *, applied: bool = False) -> asyncio.Event:
        """Make calls to ``method`` wait unanswered until the returned event is set; ``held[method]`` is set once
        the first such call has arrived, so a test can act while a client waits on Slack. With ``applied`` the call
        takes effect first (the message exists) and only its answer waits."""
        self.held[method] = asyncio.Event()
        self._holds[method] = asyncio.Event()
        if applied:
            self._applied_holds.add(method)
        return self._holds[method]

    def disable_streaming(self) -> None:
        """Makes ``chat.startStream``/``appendStream``/``stopStream`` answer ``unknown_method``."""
        self._streaming_enabled = False

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The fake's view of the messages in ``channel``, oldest first (copies).

        Every message has ``ts``, ``thread_ts`` (``None`` for a top-level message), ``text``, ``user``,
        ``channel`` and ``streaming`` (``True`` while a ``chat.startStream`` message is not yet stopped); bot
        messages also have ``bot_id`` and ``app_id``, edited ones ``edited``, and ``blocks``/``metadata`` when given.
        """
        return [copy.deepcopy(m) for m in sorted(self._messages.get(channel, []), key=lambda m: _ts_key(m["ts"]))]

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U1",
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Seeds a (user) message the fake should know, e.g. the one a conversation starts from.

        Returns:
            A copy of the stored message; ``ts`` is assigned if not given.
        """
        message = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts or self._next_ts(),
            "thread_ts": thread_ts,
            "team": self.team_id,
            "streaming": False,
        }
        self._messages[channel].append(message)
        return copy.deepcopy(message)

    def event_payload(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        """Wraps ``event`` in an Events API ``event_callback`` payload for :meth:`push_event`."""
        return {
            "token": "verification-token",
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    # ------------------------------------------------------------------ Socket Mode

    async def push_event(
        self,
        payload: dict[str, Any],
        *,
        envelope_type: str = "events_api",
        timeout: float = 60.0,
    ) -> dict[str, Any] | None:
        """Sends an envelope carrying ``payload`` to the newest Socket Mode client and waits for its ack.

        A ``message``/``app_mention`` event in an ``event_callback`` payload is also added to the fake's
        messages (once per channel and ts), as Slack would know it.

        Returns:
            The acknowledgement (``{"envelope_id": ...}``, plus ``payload`` if the client sent one), or ``None``
            if none arrived within ``timeout`` seconds (or the fake was closed meanwhile).

        Raises:
            RuntimeError: If no Socket Mode client is connected.
        """
        ws = self._current_socket()
        self._remember_event_message(payload)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = future
        self.envelopes.append(envelope)
        try:
            await ws.send_json(envelope)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            self._ack_waiters.pop(envelope_id, None)

    async def send_socket_message(self, message: dict[str, Any]) -> None:
        """Sends a raw JSON message (e.g. ``{"type": "disconnect", "reason": "refresh_requested"}``).

        Raises:
            RuntimeError: If no Socket Mode client is connected.
        """
        await self._current_socket().send_json(message)

    def _current_socket(self) -> web.WebSocketResponse:
        open_sockets = [ws for ws in self._sockets if not ws.closed]
        if not open_sockets:
            raise RuntimeError("no Socket Mode client is connected")
        return open_sockets[-1]

    def _remember_event_message(self, payload: dict[str, Any]) -> None:
        event = payload.get("event")
        if payload.get("type") != "event_callback" or not isinstance(event, dict):
            return
        if event.get("type") not in ("message", "app_mention") or event.get("subtype"):
            return
        channel, ts = event.get("channel"), event.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str) or self._find(channel, ts) is not None:
            return
        thread_ts = event.get("thread_ts")
        self.add_message(
            channel,
            str(event.get("text", "")),
            user=str(event.get("user", "")),
            ts=ts,
            thread_ts=thread_ts if isinstance(thread_ts, str) else None,
        )

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(timeout=_WS_CLOSE_TIMEOUT)
        await ws.prepare(request)
        self._sockets.append(ws)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {
                        "host": "fake-slack",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": APP_ID},
                }
            )
            self.socket_connected.set()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_text(msg.data)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self.socket_connected.clear()
        return ws

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or not isinstance(message.get("envelope_id"), str):
            return
        self.acks.append(message)
        future = self._ack_waiters.get(message["envelope_id"])
        if future is not None and not future.done():
            future.set_result(message)

    # ------------------------------------------------------------------ Web API plumbing

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        headers = {name.lower(): value for name, value in request.headers.items()}
        at = time.monotonic()
        try:
            args = await _read_args(request)
        except SlackError as err:
            self._record(SlackCall(method=method, args={}, headers=headers, at=at))
            return _json_response({"ok": False, "error": err.error})
        call = SlackCall(method=method, args=args, headers=headers, at=at)
        gate = self._holds.get(method)
        applied = method in self._applied_holds
        if gate is not None and not applied:
            self.held[method].set()
            await gate.wait()
        try:
            payload = self._answer(call)
        except SlackError as err:
            return _json_response({"ok": False, "error": err.error}, status=err.status, headers=err.headers)
        finally:
            self._record(call)
        if gate is not None and applied:
            self.held[method].set()
            await gate.wait()
        return _json_response(payload)

    def _record(self, call: SlackCall) -> None:
        """Records ``call`` (after its effects are applied, so waiters see them) and wakes :meth:`wait_for`."""
        self.calls.append(call)
        self._calls_changed.set()
        self._calls_changed = asyncio.Event()

    def _answer(self, call: SlackCall) -> dict[str, Any]:
        self._check_auth(call)
        failures = self._failures.get(call.method)
        if failures:
            failure = failures.popleft()
            headers = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
            raise SlackError(failure.error, status=failure.status, headers=headers)
        if call.method in STREAM_METHODS and not self._streaming_enabled:
            raise SlackError("unknown_method")
        handler = self._handlers.get(call.method)
        return handler(call.args) if handler is not None else {"ok": True}

    def _check_auth(self, call: SlackCall) -> None:
        expected = self.app_token if call.method == "apps.connections.open" else self.bot_token
        token = call.token
        if token is None:
            raise SlackError("not_authed")
        if token == expected:
            return
        if token in (self.bot_token, self.app_token):
            raise SlackError("not_allowed_token_type")
        raise SlackError("invalid_auth")

    def _next_ts(self) -> str:
        self._ts_counter += 1
        seconds, micros = divmod(self._ts_counter, 1_000_000)
        return f"{self._ts_epoch + seconds}.{micros:06d}"

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _require_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        message = self._find(channel, _required(args, "ts", "message_not_found"))
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _require_streaming(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._require_message(args)
        if not message["streaming"]:
            raise SlackError("message_not_in_streaming_state")
        return message

    def _new_bot_message(self, channel: str, text: str, args: dict[str, Any], *, streaming: bool) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "text": text,
            "ts": self._next_ts(),
            "thread_ts": args.get("thread_ts") or None,
            "streaming": streaming,
        }
        for key in ("blocks", "attachments", "metadata"):
            if args.get(key) is not None:
                message[key] = args[key]
        self._messages[channel].append(message)
        return message

    # ------------------------------------------------------------------ Web API methods

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": "Fake",
            "user": "supportbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.socket_url}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        text = str(args.get("text") or "")
        if len(text) > MAX_MESSAGE_CHARS:
            raise SlackError("msg_too_long")
        if not text and not args.get("blocks") and not args.get("attachments"):
            raise SlackError("no_text")
        message = self._new_bot_message(channel, text, args, streaming=False)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": _public(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._require_message(args)
        if "text" in args:
            text = str(args.get("text") or "")
            if len(text) > MAX_MESSAGE_CHARS:
                raise SlackError("msg_too_long")
            message["text"] = text
        for key in ("blocks", "attachments", "metadata"):
            if key in args:
                message[key] = args[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "text": message["text"],
            "message": _public(message),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._require_message(args)
        self._messages[message["channel"]].remove(message)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        _required(args, "channel", "channel_not_found")
        _required(args, "user", "user_not_in_channel")
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        message = self._new_bot_message(channel, _markdown_of(args), args, streaming=True)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _chat_append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._require_streaming(args)
        message["text"] += _markdown_of(args)
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _chat_stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._require_streaming(args)
        message["text"] += _markdown_of(args)
        for key in ("blocks", "metadata"):
            if args.get(key) is not None:
                message[key] = args[key]
        message["streaming"] = False
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": _public(message)}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        top_level = [m for m in self.messages(channel) if m["thread_ts"] in (None, m["ts"])]
        top_level.reverse()  # newest first, as Slack answers
        limit = _limit(args, 100)
        return {
            "ok": True,
            "messages": [_public(m) for m in top_level[:limit]],
            "has_more": len(top_level) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        ts = _required(args, "ts", "thread_not_found")
        thread = [m for m in self.messages(channel) if m["ts"] == ts or m["thread_ts"] == ts]
        if not thread:
            raise SlackError("thread_not_found")
        limit = _limit(args, 1000)
        return {
            "ok": True,
            "messages": [_public(m) for m in thread[:limit]],
            "has_more": len(thread) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(args, "user", "user_not_found")
        is_bot = user_id == self.bot_user_id
        name = "supportbot" if is_bot else f"user-{user_id.lower()}"
        real_name = "Supportbot" if is_bot else f"User {user_id}"
        return {
            "ok": True,
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "deleted": False,
                "real_name": real_name,
                "tz": "Europe/London",
                "tz_offset": 0,
                "is_bot": is_bot,
                "is_admin": False,
                "is_app_user": False,
                "profile": {
                    "real_name": real_name,
                    "display_name": name,
                    "email": None if is_bot else f"{name}@fake.slack.test",
                    "team": self.team_id,
                },
            },
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._view_counter += 1
        view = args.get("view")
        view = view if isinstance(view, dict) else {}
        return {"ok": True, "view": {**view, "id": f"V{self._view_counter:08d}", "team_id": self.team_id}}
