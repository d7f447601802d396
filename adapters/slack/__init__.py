"""Slack, on slack-bolt's ``AsyncApp``: @mentions in channels and threads, DMs, AI-assistant threads, commands.

Events arrive over the HTTP Events API (``POST /slack/events`` on the shared web server, signature verified by
Bolt) or over Socket Mode. Every delivery is recorded in the inbox, then acknowledged; a worker (in this process or
another) takes it from there and calls :meth:`SlackAdapter.answer`, which runs the turn and posts the reply.

What is answered:
- ``app_mention`` in a channel: in the mention's thread, or in a new thread on the mention when it was top-level.
- direct messages: in the DM (in the user's thread when they used one).
- follow-ups in a thread the bot is already in, without a new mention (``slack.follow_threads``).
- messages in an AI-assistant thread (the assistant container), with a "thinking" status meanwhile.

What is ignored: the bot's own messages, other bots, and message subtypes that are not new user text
(edits, deletions, joins, topic changes…). An edited message is not answered again; a deleted one stays in
memory until the session expires or is reset.

Escalations (``escalate_to_human``) go to ``slack.escalation_channel`` as top-level messages, through the same
posting path as replies.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import ClientError, web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.reply import Replier, reply_tag, slack_error, tagged_for
from adapters.slack.translate import command_of, is_user_text, split_message, to_incoming, to_inert_text, workspace_of
from bot.adapter import HttpRoute
from bot.config import Settings
from bot.core import SupportBot
from bot.errors import EscalationFailed, ShuttingDown, StoreUnavailable
from bot.export import recap, session_json
from bot.inbox import Attempt, Inbox
from bot.inbox.desk import Desk
from bot.messages import IncomingMessage

log = logging.getLogger("supportbot.slack")

THINKING_STATUS = "is thinking…"
GREETING = "Hi, I'm the IT helpdesk bot. Tell me what is going wrong and I'll help you fix it."
SUGGESTED_PROMPTS = [
    {"title": "VPN won't connect", "message": "My VPN is not connecting."},
    {"title": "Can't get email", "message": "I cannot access my email in Outlook."},
    {"title": "Reset my password", "message": "I forgot my password and I'm locked out."},
]
HELP_TEXT = (
    "I answer IT questions and remember each conversation (each thread, each DM) on its own.\n"
    "• Mention me in a channel to start a thread; reply in the thread to continue.\n"
    "• `reset` forgets this conversation, `summary` recaps it, `export` sends it to you as JSON, `help` shows this."
)
SORRY_TEXT = "Sorry, something went wrong while I was answering. Please try again in a minute."
NOT_HERE_TEXT = "I only answer in the helpdesk channels I'm set up for; please ask there or send me a DM."
THREAD_CACHE_SIZE = 10_000  # threads remembered as "the bot is in it"
THREAD_MISS_TTL_S = 30.0  # how long "the bot is not in this thread" is believed before asking Slack again
CLOSE_GRACE_S = 10.0  # how long aclose waits for replies still being posted

Listener = Callable[..., Awaitable[None]]


@dataclass(slots=True)
class _Intake:
    """Whether a listener of the request being dispatched could not record its event (then Slack gets a 503)."""

    failed: bool = False


_INTAKE: ContextVar[_Intake | None] = ContextVar("slack_intake", default=None)
_TS = re.compile(r"\d+\.\d+")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # Unix seconds, ASCII digits only (int() would take "１２" or " 12 ")
# What a Web API call raises when Slack answers with an error or cannot be reached (refused, reset, timed out).
_CALL_FAILED = (SlackClientError, ClientError, TimeoutError)


class SlackAdapter:
    """Slack over the Events API (``SLACK_SIGNING_SECRET``) and/or Socket Mode (``SLACK_APP_TOKEN``)."""

    name: ClassVar[str] = "slack"

    def __init__(self, *, settings: Settings) -> None:
        secrets = settings.secrets
        if secrets.slack_bot_token is None:
            raise ValueError("SLACK_BOT_TOKEN is required")
        self._settings = settings
        self._signing_secret = secrets.slack_signing_secret
        self._verifier = (
            SignatureVerifier(self._signing_secret.get_secret_value()) if self._signing_secret is not None else None
        )
        self._app_token = secrets.slack_app_token
        self.client = AsyncWebClient(
            token=secrets.slack_bot_token.get_secret_value(),
            base_url=settings.slack.api_url,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
        )
        self._replier = Replier(self.client, stream=settings.slack.stream)
        self._app: AsyncApp | None = None
        self._bot: SupportBot | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._desk: Desk | None = None
        self._intake = True
        self._bot_identity: tuple[str | None, str | None] | None = None
        self._threads: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._not_in_thread: dict[tuple[str, str], float] = {}

    @classmethod
    def enabled(cls, settings: Settings) -> tuple[bool, str]:
        secrets = settings.secrets
        if secrets.slack_bot_token is None:
            return False, "slack: off — set SLACK_BOT_TOKEN plus SLACK_SIGNING_SECRET (Events API) or SLACK_APP_TOKEN"
        transports = []
        if secrets.slack_signing_secret is not None:
            transports.append("Events API at POST /slack/events")
        if secrets.slack_app_token is not None:
            transports.append("Socket Mode")
        if not transports:
            return False, "slack: off — SLACK_BOT_TOKEN is set; add SLACK_SIGNING_SECRET or SLACK_APP_TOKEN"
        return True, f"slack: on ({', '.join(transports)})"

    @property
    def escalation_channel(self) -> str | None:
        """The channel id escalations are posted to (``slack.escalation_channel``), or ``None``."""
        return self._settings.slack.escalation_channel

    async def post_escalation(self, text: str) -> str:
        """Post a hand-over to the escalation channel as inert plain text, split like replies when long.

        The hand-over quotes the user, so nothing in it may render: it is posted with ``mrkdwn`` off (no bold, no
        ``[label](url)`` link), ``&<>`` escaped (no ``<url|label>``, no ``<!channel>``, ``<!here>`` or ``<@U…>``),
        URLs and domains defanged (no automatic link), and no link or media preview. A bare ``@here`` only notifies
        with ``link_names``, which is never sent.

        Returns:
            The first message's permalink, or ``channel/ts`` when Slack gives no permalink.

        Raises:
            EscalationFailed: no channel is configured, the text is blank, or Slack refused the post or could not be
                reached.
        """
        channel = self.escalation_channel
        if channel is None:
            raise EscalationFailed("escalation is not configured")
        if not text.strip():
            raise EscalationFailed("the escalation text is empty")
        posted: list[str] = []
        try:
            for part in split_message(text):
                response = await self.client.chat_postMessage(
                    channel=channel, text=to_inert_text(part), mrkdwn=False, unfurl_links=False, unfurl_media=False
                )
                posted.append(str(response["ts"]))
        except SlackApiError as exc:
            raise EscalationFailed(f"Slack refused the escalation post to {channel}: {slack_error(exc)}") from exc
        except _CALL_FAILED as exc:
            raise EscalationFailed(f"Slack could not be reached for the escalation: {type(exc).__name__}") from exc
        return await self._permalink(channel, posted[0])

    async def _permalink(self, channel: str, ts: str) -> str:
        fallback = f"{channel}/{ts}"
        try:
            response = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except _CALL_FAILED as exc:
            # The escalation is posted: failing now would have the caller post it again.
            reason = slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("no permalink for escalation %s: %s", fallback, reason)
            return fallback
        permalink = response.get("permalink")
        return permalink if isinstance(permalink, str) and permalink else fallback

    def http_routes(self) -> Sequence[HttpRoute]:
        """``POST /slack/events`` when the Events API is configured (and this process takes Slack's deliveries)."""
        takes = self._signing_secret is not None and self._settings.server.role != "worker"
        return [("POST", "/slack/events", self.handle_http)] if takes else []

    async def start(self, bot: SupportBot, *, inbox: Inbox | None = None, intake: bool = True) -> None:
        self._bot = bot
        self._desk = Desk(inbox) if inbox is not None else Desk.own(self.name, self.answer)
        self._intake = intake
        self._app = self._build_app()
        if self._app_token is not None and intake:
            self._socket = AsyncSocketModeHandler(self._app, app_token=self._app_token.get_secret_value())
            await self._socket.connect_async()

    async def drain(self) -> None:
        """Disconnect Socket Mode so Slack delivers to the other connections; the Events API route answers 503
        from now on (the web server stops listening at the same time)."""
        if self._socket is not None:
            socket, self._socket = self._socket, None
            await socket.close_async()

    async def idle(self) -> bool:
        """Whether every message this adapter recorded has been answered (its own inbox; tests and scripts)."""
        return self._desk is None or await self._desk.idle()

    async def aclose(self) -> None:
        await self.drain()
        if self._desk is not None:
            desk, self._desk = self._desk, None
            await desk.aclose(grace=CLOSE_GRACE_S)

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        """The Events API endpoint: the signature and timestamp are verified, ``url_verification`` answered, and
        every event recorded in the inbox before it is acknowledged; the answer is worked out by a worker.

        When the inbox cannot be written the answer is 503, so Slack delivers the event again (and the retry is
        recorded once, whichever process it reaches)."""
        if self._app is None or self._bot is None or self._bot.closing:
            # Not acknowledging makes Slack deliver the event again, to a process that is not shutting down.
            return web.json_response({"error": "not accepting events right now"}, status=503)
        raw = await request.read()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        # slack_sdk's verifier raises on a timestamp int() refuses and on a body that is not UTF-8: both are checked
        # here first, so a forged or garbled request is a 401 or 400, never a 500 with a traceback.
        if self._verifier is None or not _TIMESTAMP.fullmatch(timestamp) or not signature:
            return web.json_response({"error": "invalid signature or stale timestamp"}, status=401)
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.json_response({"error": "the body is not UTF-8"}, status=400)
        # Verified before anything parses the body, so an unsigned request is a 401 whatever it contains.
        if not self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return web.json_response({"error": "invalid signature or stale timestamp"}, status=401)
        headers = {k.lower(): list(request.headers.getall(k)) for k in request.headers}
        outcome = _Intake()
        token = _INTAKE.set(outcome)
        try:
            bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=headers)
            response = await self._app.async_dispatch(bolt_request)
        except Exception as exc:
            # Bolt assumes well-formed payloads; a signed but malformed one is the sender's problem, not a 5xx.
            log.warning("malformed Slack request: %s", type(exc).__name__)
            return web.json_response({"error": "malformed Slack request"}, status=400)
        finally:
            _INTAKE.reset(token)
        if outcome.failed:
            return web.json_response(
                {"error": "could not record the event; retry"}, status=503, headers={"Retry-After": "1"}
            )
        if response.status >= 500:
            log.warning("Slack request not handled (%s): %s", response.status, response.body[:200])
            return web.json_response({"error": "malformed Slack request"}, status=400)
        return await to_aiohttp_response(response)

    def _build_app(self) -> AsyncApp:
        app = AsyncApp(
            client=self.client,
            signing_secret=self._signing_secret.get_secret_value() if self._signing_secret else None,
            request_verification_enabled=self._signing_secret is not None,
            # Listeners only record the event in the inbox and return, so running them before the ack keeps the ack
            # fast and means no event is acknowledged before it is durably recorded.
            process_before_response=True,
            logger=logging.getLogger("supportbot.slack.bolt"),
        )
        app.use(self._assistant())
        self._listen(app)

        @app.error
        async def on_error(error: Exception) -> None:
            # A listener fails only when the inbox could not record the event: not acknowledging it is the answer.
            log.warning("Slack event not recorded: %s", error if isinstance(error, StoreUnavailable) else repr(error))

        return app

    def _assistant(self) -> AsyncAssistant:
        assistant = AsyncAssistant()

        @assistant.thread_started
        async def on_assistant_started(payload: dict[str, Any], body: dict[str, Any]) -> None:
            thread = payload.get("assistant_thread") or {}
            channel, thread_ts = str(thread.get("channel_id", "")), str(thread.get("thread_ts", ""))
            greeting = IncomingMessage(
                platform="slack",
                workspace=workspace_of(body),
                channel=channel,
                thread=thread_ts,
                user=str(thread.get("user_id", "") or "-"),
                text="",
                event_id=f"greeting:{channel}:{thread_ts}",
                is_direct=True,
            )
            await self._record(greeting, kind="greet")

        @assistant.user_message
        async def on_assistant_message(payload: dict[str, Any], body: dict[str, Any], context: Any) -> None:
            if is_user_text(payload, context.bot_user_id):
                msg = to_incoming(payload, body, bot_user_id=context.bot_user_id, starts_thread=False)
                await self._record(msg, kind="assistant")

        return assistant

    def _listen(self, app: AsyncApp) -> None:
        @app.event("app_mention")
        async def on_mention(event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
            if not is_user_text(event, context.bot_user_id):
                return
            msg = to_incoming(event, body, bot_user_id=context.bot_user_id, starts_thread=True)
            await self._record(msg, kind="answer" if self._allowed(msg.channel) else "refuse")

        @app.event("message")
        async def on_message(event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
            bot_user_id = context.bot_user_id
            if not is_user_text(event, bot_user_id):
                return
            if event.get("channel_type") == "im":
                msg = to_incoming(event, body, bot_user_id=bot_user_id, starts_thread=False)
                await self._record(msg, kind="answer")
                return
            thread_ts = event.get("thread_ts")
            mentioned = bool(bot_user_id) and f"<@{bot_user_id}" in str(event.get("text", ""))
            if not thread_ts or mentioned or not self._settings.slack.follow_threads:
                return  # mentions arrive as app_mention too; top-level chatter is not for the bot
            if not self._allowed(str(event["channel"])):
                return
            msg = to_incoming(event, body, bot_user_id=bot_user_id, starts_thread=False)
            # Whether the bot is in the thread is asked of Slack by the worker, not before the ack.
            await self._record(msg, kind="follow", bot_user_id=bot_user_id or "", bot_id=context.bot_id or "")

        @app.command(self._settings.slack.command)
        async def on_command(ack: Any, command: dict[str, Any]) -> None:
            channel = str(command.get("channel_id", ""))
            msg = IncomingMessage(
                platform="slack",
                workspace=workspace_of(command),
                channel=channel,
                thread=None,
                user=str(command.get("user_id", "")),
                text=str(command.get("text", "")),
                event_id=f"command:{command.get('trigger_id', '')}",
                is_direct=channel.startswith("D"),
            )
            await self._record(msg, kind="command", word=command_of(msg.text) or "help")
            await ack()

    async def _record(self, msg: IncomingMessage, *, kind: str, **route: str) -> None:
        """Record ``msg`` in the inbox before Slack is acknowledged.

        Raises:
            StoreUnavailable: nothing was recorded; Slack must not be acknowledged (it delivers the event again).
        """
        assert self._bot is not None and self._desk is not None
        try:
            await self._desk.record(msg, route={"kind": kind, **route}, session_id=self._bot.session_id(msg))
        except StoreUnavailable:
            outcome = _INTAKE.get()
            if outcome is not None:
                outcome.failed = True
            raise

    async def answer(self, attempt: Attempt) -> None:
        """Answer one recorded Slack event (the worker's handler)."""
        msg, route = attempt.delivery.message, attempt.delivery.route
        kind = route.get("kind")
        if kind == "greet":
            if msg.thread is not None:
                await self._greet(msg.channel, msg.thread)
        elif kind == "refuse":
            await self._refuse(msg)
        elif kind == "command":
            await self._command(str(route.get("word", "help")), msg, thread_ts=None, ephemeral=True)
        elif kind == "follow":
            bot_user_id, bot_id = str(route.get("bot_user_id") or "") or None, str(route.get("bot_id") or "") or None
            if msg.thread is not None and await self._in_thread(
                msg.channel, msg.thread, bot_user_id=bot_user_id, bot_id=bot_id
            ):
                await self._converse(attempt)
        else:
            await self._converse(attempt, assistant=kind == "assistant")

    async def _greet(self, channel: str, thread_ts: str) -> None:
        await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=GREETING)
        await self.client.assistant_threads_setSuggestedPrompts(
            channel_id=channel, thread_ts=thread_ts, prompts=SUGGESTED_PROMPTS
        )

    def _allowed(self, channel: str) -> bool:
        allowlist = self._settings.slack.channels
        return not allowlist or channel in allowlist or channel.startswith("D")

    async def _refuse(self, msg: IncomingMessage) -> None:
        await self._replier.post_ephemeral(channel=msg.channel, user=msg.user, thread_ts=msg.thread, text=NOT_HERE_TEXT)

    async def _in_thread(self, channel: str, thread_ts: str, *, bot_user_id: str | None, bot_id: str | None) -> bool:
        """Whether the bot has posted in a thread: remembered when it replies, else asked of Slack (and cached)."""
        key = (channel, thread_ts)
        if key in self._threads:
            return True
        if self._not_in_thread.get(key, 0.0) > time.monotonic():
            return False
        try:
            replies = await self.client.conversations_replies(channel=channel, ts=thread_ts, limit=200)
        except SlackApiError as exc:
            log.warning("cannot read thread %s in %s: %s", thread_ts, channel, slack_error(exc))
            return False
        present = any(
            (bot_id and m.get("bot_id") == bot_id) or (bot_user_id and m.get("user") == bot_user_id)
            for m in replies.get("messages", [])
        )
        if present:
            self._remember_thread(channel, thread_ts)
        else:
            self._not_in_thread[key] = time.monotonic() + THREAD_MISS_TTL_S
        return present

    def _remember_thread(self, channel: str, thread_ts: str) -> None:
        self._threads[(channel, thread_ts)] = None
        self._threads.move_to_end((channel, thread_ts))
        while len(self._threads) > THREAD_CACHE_SIZE:
            self._threads.popitem(last=False)
        self._not_in_thread.pop((channel, thread_ts), None)

    async def _converse(self, attempt: Attempt, *, assistant: bool = False) -> None:
        """Answer a recorded message in its own thread (or DM), streaming the reply.

        A redelivered entry whose turn an earlier attempt had already saved (it died before posting) gets the saved
        reply; where that attempt had started posting, its message is finished instead of a second one posted.

        Raises:
            StoreUnavailable, SlackClientError, ClientError, TimeoutError: the store or Slack could not be reached;
                the entry is tried again later.
        """
        assert self._bot is not None
        delivery = attempt.delivery
        msg = delivery.message
        channel, thread_ts = msg.channel, msg.thread
        word = command_of(msg.text)
        if word is not None:
            await self._command(word, msg, thread_ts=thread_ts, ephemeral=word == "export")
            return
        session_id = self._bot.session_id(msg)
        existing = delivery.reply_ref
        try:
            if existing is None and delivery.redelivered:
                existing = await self._started_reply(msg)
            if assistant and thread_ts is not None:
                await self.client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=THINKING_STATUS
                )
            async with contextlib.aclosing(self._bot.stream(msg, from_inbox=True)) as chunks:
                posted = await self._replier.deliver(
                    chunks,
                    channel=channel,
                    thread_ts=thread_ts,
                    team_id=msg.workspace,
                    user_id=msg.user,
                    existing_ts=existing,
                    on_posted=attempt.note_reply,
                    tag=reply_tag(msg.event_id),
                )
            if not posted and delivery.redelivered and attempt.holds():
                saved = await self._bot.stored_reply(msg)
                if saved is not None:
                    log.info("posting the saved reply of a redelivered message", extra={"session_id": session_id})
                    posted = saved
                    await self._replier.finish(
                        channel=channel,
                        thread_ts=thread_ts,
                        existing_ts=existing,
                        text=saved,
                        tag=reply_tag(msg.event_id),
                    )
            if posted and thread_ts is not None:
                self._remember_thread(channel, thread_ts)
        except SlackApiError as exc:
            # The turn itself is stored by the core; only showing it failed, and Slack would refuse it again.
            context = {"session_id": session_id, "event_id": msg.event_id}
            log.error("Slack refused the reply: %s", slack_error(exc), extra=context)
        except (StoreUnavailable, ShuttingDown, *_CALL_FAILED):
            raise
        except Exception:
            log.exception("answering %s failed", msg.event_id, extra={"session_id": session_id})
            with contextlib.suppress(SlackApiError):
                await self._replier.post(
                    channel=channel, thread_ts=thread_ts, text=SORRY_TEXT, tag=reply_tag(msg.event_id)
                )

    async def _started_reply(self, msg: IncomingMessage) -> str | None:
        """The reply an earlier attempt at ``msg`` started without living to note it (it died while Slack created the
        message): the bot's first message after ``msg`` in its thread or DM that is marked as its reply, or that is
        marked as no message's reply (a stream that never stopped: Slack takes metadata only when a stream stops).

        In a thread several people share, another person's unfinished reply could be taken for it; the result then
        is that one reply holds the other's text, never a lost one.
        """
        user_ts = msg.event_id.partition(":")[2]
        try:
            bot_user_id, bot_id = await self._identity()
            if msg.thread is not None:
                page = await self.client.conversations_replies(
                    channel=msg.channel, ts=msg.thread, limit=200, include_all_metadata=True
                )
            else:
                page = await self.client.conversations_history(
                    channel=msg.channel, oldest=user_ts, limit=200, include_all_metadata=True
                )
        except (SlackApiError, *_CALL_FAILED) as exc:
            log.info("could not look for a started reply to %s: %s", msg.event_id, type(exc).__name__)
            return None
        later = sorted((m for m in page.get("messages", []) if _ts_after(m.get("ts"), user_ts)), key=_ts_order)
        for message in later:
            if message.get("bot_id") == bot_id or (bot_user_id and message.get("user") == bot_user_id):
                answers = tagged_for(message)
                if answers is None or answers == msg.event_id:
                    return str(message["ts"])
        return None

    async def _identity(self) -> tuple[str | None, str | None]:
        """The bot's user id and bot id, asked of Slack once."""
        if self._bot_identity is None:
            response = await self.client.auth_test()
            self._bot_identity = (response.get("user_id"), response.get("bot_id"))
        return self._bot_identity

    async def _command(self, word: str, msg: IncomingMessage, *, thread_ts: str | None, ephemeral: bool) -> None:
        assert self._bot is not None
        key = self._bot.session_key(msg)
        if word == "reset":
            await self._bot.reset(key)
            text = "Done: I have forgotten this conversation. Ask me anything to start afresh."
        elif word == "summary":
            text = recap(await self._bot.store.get(key))
        elif word == "export":
            record = await self._bot.store.get(key)
            text = "Nothing to export yet." if record is None else f"```\n{session_json(record)}\n```"
        else:
            text = HELP_TEXT
        try:
            if ephemeral:
                await self._replier.post_ephemeral(channel=msg.channel, user=msg.user, thread_ts=thread_ts, text=text)
            else:
                await self._replier.post(
                    channel=msg.channel, thread_ts=thread_ts, text=text, tag=reply_tag(msg.event_id)
                )
        except SlackApiError as exc:
            log.error("Slack refused the %s answer: %s", word, slack_error(exc), extra={"session_id": key.id})


def _ts_order(message: dict[str, Any]) -> tuple[int, int]:
    seconds, _, micros = str(message.get("ts", "0")).partition(".")
    return int(seconds or 0), int(micros or 0)


def _ts_after(ts: Any, reference: str) -> bool:
    """Whether Slack timestamp ``ts`` is later than ``reference`` (both ``seconds.micros``)."""
    if not isinstance(ts, str) or not _TS.fullmatch(ts) or not _TS.fullmatch(reference):
        return False
    return _ts_order({"ts": ts}) > _ts_order({"ts": reference})
