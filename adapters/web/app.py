"""The HTTP surface: web chat page, ``/api/*``, health, readiness and metrics, on aiohttp.

Web sessions live under platform ``web``: the browser's session id is the channel and the user, so no
web client can ever name a Slack or Discord session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from adapters.web.guard import CLIENT_KEY, body_timeout_middleware, guard_middleware
from bot import __version__
from bot.config import Settings
from bot.core import SupportBot
from bot.errors import ShuttingDown, StoreUnavailable
from bot.inbox import Inbox
from bot.messages import IncomingMessage, Reply, ReplyKind
from bot.model import model_name
from bot.session import SessionKey

log = logging.getLogger("supportbot.web")

BOT_KEY = web.AppKey("bot", SupportBot)
SETTINGS_KEY = web.AppKey("settings", Settings)
INBOX_KEY = web.AppKey("inbox", Inbox)

# Matched with fullmatch(): "$" would also accept a trailing newline, and "id\n" would be a session of its own (and a
# newline in a ticket's Idempotency-Key header).
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
PLATFORM = "web"
# Ceiling for any route (platform webhooks carry bigger payloads than a chat message); /api/chat has its own limit.
SERVER_MAX_BODY_BYTES = 1_048_576

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    """A client error, answered as JSON with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def error_response(status: int, reason: str, **headers: str) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers or None)


def web_session_key(session_id: str) -> SessionKey:
    """The store key of a browser session id."""
    return SessionKey(platform=PLATFORM, workspace=None, channel=session_id, thread=None, user=session_id)


def _check_session_id(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest(400, "session_id must be a string")
    if not SESSION_ID.fullmatch(value):
        raise BadRequest(400, "session_id must be 8-64 characters of letters, digits, '-' or '_' (a UUID works)")
    return value


async def read_chat_request(request: web.Request) -> IncomingMessage:
    """Validate a ``POST /api/chat`` body into an :class:`IncomingMessage`.

    Raises:
        BadRequest: the body is not what the route accepts; the reason says why.
    """
    if request.content_type != "application/json":
        raise BadRequest(415, "send the body as JSON with Content-Type: application/json")
    limit = request.app[SETTINGS_KEY].web.max_body_bytes
    if (request.content_length or 0) > limit:
        raise BadRequest(413, f"the body is larger than {limit} bytes")
    raw = await request.read()
    if len(raw) > limit:
        raise BadRequest(413, f"the body is larger than {limit} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, 'the body must be a JSON object: {"session_id": "...", "message": "..."}')
    session_id = _check_session_id(body.get("session_id"))
    text = body.get("message")
    if not isinstance(text, str):
        raise BadRequest(400, "message must be a string")
    if not text.strip():
        raise BadRequest(400, "message must not be empty")
    message_id = body.get("message_id")
    if message_id is not None and (not isinstance(message_id, str) or not MESSAGE_ID.fullmatch(message_id)):
        raise BadRequest(400, "message_id, when given, must be 1-128 characters of letters, digits, '-', '_', '.', ':'")
    return IncomingMessage(
        platform=PLATFORM,
        workspace=None,
        channel=session_id,
        thread=None,
        user=session_id,
        text=text,
        event_id=message_id or uuid.uuid4().hex,
        is_direct=True,
        requester=f"{PLATFORM}:{request[CLIENT_KEY]}",
    )


def _reply_body(msg: IncomingMessage, text: str, kind: str) -> dict[str, Any]:
    return {"session_id": msg.channel, "message_id": msg.event_id, "reply": text, "kind": kind}


async def chat(request: web.Request) -> web.StreamResponse:
    """``POST /api/chat``: answer one message, as JSON or, with ``Accept: text/event-stream``, as SSE."""
    bot = request.app[BOT_KEY]
    msg = await read_chat_request(request)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _chat_stream(request, bot, msg)
    reply = await bot.handle(msg)
    if reply is None:
        return await _duplicate(bot, msg)
    return web.json_response(_reply_body(msg, reply.text, reply.kind.value))


async def _duplicate(bot: SupportBot, msg: IncomingMessage) -> web.Response:
    """A retried message_id: the stored answer, or 409 while the first attempt still runs."""
    previous = await bot.stored_reply(msg)
    if previous is None:
        return error_response(409, "this message_id is being answered right now; retry in a moment")
    return web.json_response(_reply_body(msg, previous, "duplicate"))


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _chat_stream(request: web.Request, bot: SupportBot, msg: IncomingMessage) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    parts: list[str] = []
    replies: list[Reply | None] = []
    stream = bot.stream(msg, on_reply=replies.append)
    try:
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                if not response.prepared:
                    await response.prepare(request)
                parts.append(chunk)
                await response.write(_sse("chunk", {"text": chunk}))
    except ConnectionResetError:
        # The tab went away; the turn finishes and is stored regardless.
        return response
    if not parts:
        previous = await bot.stored_reply(msg)
        if previous is None:
            return error_response(409, "this message_id is being answered right now; retry in a moment")
        await response.prepare(request)
        await response.write(_sse("chunk", {"text": previous}))
        await response.write(_sse("done", _reply_body(msg, previous, "duplicate")))
        return response
    kind = replies[0].kind.value if replies and replies[0] is not None else ReplyKind.ANSWER.value
    await response.write(_sse("done", _reply_body(msg, "".join(parts), kind)))
    await response.write_eof()
    return response


async def history(request: web.Request) -> web.Response:
    """``GET /api/sessions/{id}/history``: a tab's conversation, to restore it after a reload."""
    session_id = _check_session_id(request.match_info["session_id"])
    record = await request.app[BOT_KEY].store.get(web_session_key(session_id))
    messages = [{"role": m.role, "content": m.content, "ts": m.ts} for m in record.messages] if record else []
    return web.json_response({"session_id": session_id, "messages": messages})


async def info(request: web.Request) -> web.Response:
    """``GET /api/info``: the bot's name and help topics for the page; version, store kind and model for operators.

    Nothing here names a host: the store is its kind (``sqlite``), the model its name (``gpt-4o-mini``).
    """
    settings = request.app[SETTINGS_KEY]
    knowledge = request.app[BOT_KEY].knowledge
    offline = not settings.llm_configured
    return web.json_response(
        {
            "name": settings.bot.name,
            "version": __version__,
            "store": store_kind(settings),
            "model": model_name(settings),
            "offline": offline,
            "topics": knowledge.articles if knowledge is not None else [],
        }
    )


def store_kind(settings: Settings) -> str:
    """The store's kind (``redis``, ``sqlite``…) without where it is or how to log in to it."""
    return settings.store_url.split("://", 1)[0].lower() if "://" in settings.store_url else "unknown"


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the page, read from the package once when the app is built."""

    body: bytes
    content_type: str
    charset: str | None
    etag: str


STATIC_KEY = web.AppKey("static", dict[str, StaticFile])
# Only the page's own files: no inline script or style, nothing from another origin, no plugins. Replies are
# sanitized before they reach the page; this keeps anything that slipped through from running or calling out.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)
_CONTENT_TYPES = {
    ".html": ("text/html", "utf-8"),
    ".js": ("text/javascript", "utf-8"),
    ".css": ("text/css", "utf-8"),
    ".svg": ("image/svg+xml", None),
    ".md": ("text/markdown", "utf-8"),
}


def load_static() -> dict[str, StaticFile]:
    """Every file under ``adapters/web/static``, by its path relative to that folder."""
    files: dict[str, StaticFile] = {}
    pending: list[tuple[str, Traversable]] = [("", resources.files("adapters.web").joinpath("static"))]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((f"{prefix}{entry.name}/", entry))
            elif entry.is_file():
                body = entry.read_bytes()
                content_type, charset = _CONTENT_TYPES.get(PurePosixPath(entry.name).suffix, ("text/plain", "utf-8"))
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                files[prefix + entry.name] = StaticFile(body, content_type, charset, etag)
    return files


def _send_static(request: web.Request, name: str, extra: dict[str, str] | None = None) -> web.Response:
    file = request.app[STATIC_KEY].get(name)
    if file is None:
        raise web.HTTPNotFound()
    # Revalidated on every load (a cheap 304), so an upgraded server never pairs a new page with an old script.
    headers = {"ETag": file.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", **(extra or {})}
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=file.body, content_type=file.content_type, charset=file.charset, headers=headers)
    if file.charset is not None:
        response.enable_compression()  # the two libraries shrink from 86 to about 30 KB
    return response


async def index(request: web.Request) -> web.Response:
    """``GET /``: the web chat page."""
    return _send_static(request, "index.html", {"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"})


async def static(request: web.Request) -> web.Response:
    """``GET /static/{path}``: the page's script, styles, icon and vendored libraries, all from the package."""
    return _send_static(request, request.match_info["path"])


async def favicon(request: web.Request) -> web.Response:
    """``GET /favicon.ico``: the SVG icon, for browsers and tools that ask for it before reading the page."""
    return _send_static(request, "favicon.svg")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers. 503 saying what is down otherwise, but not where: the page is open to anyone
    who can reach the port, and the store's host and port are the operator's business (the log names them)."""
    bot = request.app[BOT_KEY]
    settings = request.app[SETTINGS_KEY]
    kind = store_kind(settings)
    try:
        await bot.store.ping()
    except StoreUnavailable as exc:
        log.warning("readiness: the %s store is unreachable: %s", kind, exc)
        return web.json_response({"status": "unavailable", "reason": f"the {kind} store is unreachable"}, status=503)
    inbox = request.app.get(INBOX_KEY)
    if inbox is not None:
        try:
            await inbox.ping()
        except StoreUnavailable as exc:
            log.warning("readiness: the inbox cannot be written: %s", exc)
            return web.json_response({"status": "unavailable", "reason": "the inbox cannot be written"}, status=503)
    return web.json_response({"status": "ready", "store": kind, "model": model_name(settings)})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[BOT_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes JSON with a reason: client errors 4xx, shutdown 503, nothing leaks a trace."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error_response(exc.status, exc.reason)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"the body is larger than {SERVER_MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, **{k: v for k, v in exc.headers.items() if k == "Allow"})
    except ShuttingDown:
        return error_response(503, "the server is restarting; retry in a moment", **{"Retry-After": "5"})
    except StoreUnavailable as exc:
        log.error("store unavailable: %s", exc)
        return error_response(503, "memory is temporarily unavailable; retry in a moment", **{"Retry-After": "5"})
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error")


def cors_middleware(origins: tuple[str, ...]) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Answer preflights and add CORS headers for the allowed origins only."""
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or origin not in allowed or not request.path.startswith("/api/"):
            return await handler(request)
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if request.method == "OPTIONS":
            headers.update(
                {
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept",
                    "Access-Control-Max-Age": "600",
                }
            )
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
        return response

    return cors


def create_app(
    bot: SupportBot, settings: Settings, *, inbox: Inbox | None = None, chat_routes: bool = True
) -> web.Application:
    """The aiohttp application with every HTTP route."""
    guard = guard_middleware(
        [token.get_secret_value() for token in settings.secrets.web_tokens],
        trusted_proxies=settings.web.trusted_proxies,
        protect_metrics=settings.web.metrics_require_token,
    )
    app = web.Application(
        client_max_size=max(SERVER_MAX_BODY_BYTES, settings.web.max_body_bytes),
        middlewares=[
            errors_as_json,
            cors_middleware(settings.web.cors_origins),
            guard,
            body_timeout_middleware(settings.server.body_timeout),
        ],
    )
    app[BOT_KEY] = bot
    app[SETTINGS_KEY] = settings
    app[STATIC_KEY] = load_static()
    if inbox is not None:
        app[INBOX_KEY] = inbox
    if chat_routes:  # a worker-role process serves only its health, readiness and metrics
        app.router.add_get("/", index)
        app.router.add_get("/static/{path:.+}", static)
        app.router.add_get("/favicon.ico", favicon)
        app.router.add_post("/api/chat", chat)
        app.router.add_get("/api/info", info)
        app.router.add_get("/api/sessions/{session_id}/history", history)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
