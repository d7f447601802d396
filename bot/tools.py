"""The tools the model may call: search the knowledge base, file a helpdesk ticket, hand over to a person.

:class:`Toolbox` hands the LangChain tools to ``model.bind_tools()`` and runs the calls the model makes. Every call
is audited in the session's store with its arguments redacted, and :meth:`Toolbox.run` never raises (bar
cancellation): whatever goes wrong becomes a :class:`ToolMessage` telling the model, so the turn can still answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

import aiohttp
from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool, InjectedToolArg, StructuredTool
from pydantic import BaseModel, Field, InstanceOf, ValidationError, field_validator

from bot.entities import entities_block
from bot.errors import EscalationFailed, StoreUnavailable, TicketFailed
from bot.kb import KnowledgeBase
from bot.memory.base import AuditEntry, SessionContext, SessionStore
from bot.metrics import TurnMetrics
from bot.quotas import CREATE_TICKET, ESCALATE_TO_HUMAN, SideEffectQuotas, escalation_detail
from bot.ratelimit import Quotas
from bot.redact import redact_arguments, redact_text
from bot.session import SessionKey, public_reference

log = logging.getLogger("supportbot.tools")

SEARCH_KB = "search_kb"
WEB = "web"

SEARCH_RESULTS = 3
PASSAGE_CHARS = 600  # per knowledge-base passage shown to the model
DETAIL_CHARS = 500  # audit entry detail
HANDOVER_CHARS = 3_500
HANDOVER_MESSAGES = 6
HANDOVER_MESSAGE_CHARS = 300
HANDOVER_SUMMARY_CHARS = 800
RETRY_AFTER_CAP_S = 30.0  # a webhook asking for longer would hold the user's turn hostage
BACKOFF_CAP_S = 10.0
FILED_TURNS_KEPT = 1_024  # in-process memory of filed tickets; older turns are found in the audit log

Outcome = Literal["ok", "error", "not_configured", "repeated", "refused"]
Priority = Literal["low", "normal", "high", "urgent"]
Escalator = Callable[[str], Awaitable[str]]
"""Posts a hand-over text on a platform and returns a reference to the post; raises :class:`EscalationFailed`."""


def _shorten(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# --- the turn a tool serves --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnFacts:
    """What a tool may know about the turn that called it.

    Attributes:
        key: the session.
        event_id: the platform's id of the message the turn answers; a redelivery carries the same one.
        platform: where the message came from (``slack``, ``discord``, ``web``…).
        user: the author's platform id.
        context: what the turn read: the window's messages (oldest first), the summary and the entities.
        text: the user's new message (not yet in ``context``).
        sender: who the quotas count the turn against (:attr:`IncomingMessage.sender`); ``platform:user`` when
            empty.
    """

    key: SessionKey
    event_id: str
    platform: str
    user: str
    context: SessionContext
    text: str
    sender: str = ""

    @property
    def quota_key(self) -> str:
        """The user the quotas count against."""
        return self.sender or f"{self.platform}:{self.user}"

    @property
    def reference(self) -> str:
        """How a ticket or a hand-over names the session: see :func:`public_reference`."""
        return public_reference(self.key)

    @property
    def user_reference(self) -> str:
        """How a ticket or a hand-over names the user: a web user *is* the tab's session id, so it is the reference."""
        return self.reference if self.key.platform == WEB else self.user


# --- the ticket webhook ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticket:
    """A filed ticket: its id (``"filed"`` when the ticket system named none) and its link, if it gave one."""

    id: str
    url: str | None


_ID_FIELDS = ("ticket_id", "key", "number", "id")  # human-facing ids first: Jira's key, ServiceNow's number
_URL_FIELDS = ("html_url", "url", "link", "self")  # a page for people before an API address


def _ticket_from_response(body: bytes) -> Ticket:
    """Read the ticket from common webhook answers: flat, or nested under ``ticket``, ``result`` or ``data``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Ticket("filed", None)
    if not isinstance(data, dict):
        return Ticket("filed", None)
    for candidate in (data, data.get("ticket"), data.get("result"), data.get("data")):
        if not isinstance(candidate, dict):
            continue
        ids = [candidate.get(f) for f in _ID_FIELDS]
        ticket_id = next((v for v in ids if isinstance(v, str | int) and not isinstance(v, bool) and str(v)), None)
        if ticket_id is None:
            continue
        urls = [candidate.get(f) for f in _URL_FIELDS]
        url = next((v for v in urls if isinstance(v, str) and v.startswith(("http://", "https://"))), None)
        return Ticket(str(ticket_id), url)
    return Ticket("filed", None)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a numeric ``Retry-After``; the HTTP-date form is rare on webhooks and left to the back-off."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(seconds, RETRY_AFTER_CAP_S) if math.isfinite(seconds) and seconds >= 0 else None


class TicketWebhook:
    """Files tickets by POSTing JSON to a helpdesk webhook, retrying what may succeed on another try.

    429, 5xx, timeouts and connection errors are retried ``retries`` times with exponential back-off and jitter
    (a numeric ``Retry-After`` is honoured up to :data:`RETRY_AFTER_CAP_S`); any other 4xx fails at once. Every
    attempt carries the same ``Idempotency-Key`` so a receiver that honours it files a retried ticket once.
    """

    def __init__(
        self, url: str, *, token: str | None = None, timeout: float = 10.0, retries: int = 3, backoff: float = 0.5
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        self._retries = max(retries, 0)
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TicketFailed("the ticket webhook is closed")
        if self._session is None:
            # Created on first use: a ClientSession must be made inside the running event loop.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self._backoff * 2.0**attempt, BACKOFF_CAP_S) * (0.5 + random.random())
        return max(delay, retry_after or 0.0)

    async def file(self, payload: Mapping[str, Any], *, idempotency_key: str) -> Ticket:
        """POST ``payload`` and return the ticket the webhook answers with.

        A 2xx answer without a recognisable ticket id still counts as filed, with the id ``"filed"``.

        Raises:
            TicketFailed: the webhook refused the ticket or could not be reached after the retries. The message is
                one line and never holds the webhook URL (its path or query may carry a secret) or the token.
        """
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = json.dumps(dict(payload), ensure_ascii=False).encode()
        session = self._client()
        attempts = self._retries + 1
        reason = ""
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                async with session.post(self._url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        return _ticket_from_response(await response.read())
                    reason = f"HTTP {response.status}"
                    if response.status != 429 and response.status < 500:
                        raise TicketFailed(f"the ticket system refused the ticket ({reason})")
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            except aiohttp.InvalidURL as exc:
                raise TicketFailed("the ticket webhook URL is invalid") from exc
            except TimeoutError:
                reason = f"no answer within {self._timeout:g} s"
            except aiohttp.ClientError as exc:
                reason = f"connection failed: {type(exc).__name__}"
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise TicketFailed(f"the ticket system did not take the ticket after {attempts} attempt(s) (last: {reason})")

    async def aclose(self) -> None:
        """Close the HTTP session. Idempotent; later :meth:`file` calls fail."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


# --- the tools' arguments, as the model sees them ----------------------------------------------------------------


class _ToolArgs(BaseModel):
    # Every tool receives the turn, whether or not it needs it, so run() calls them all alike. It is injected:
    # left out of the schema the model sees, and whatever the model sends under that name is replaced.
    facts: Annotated[InstanceOf[TurnFacts], InjectedToolArg]


class SearchKbArgs(_ToolArgs):
    """Arguments of ``search_kb``."""

    query: str = Field(
        min_length=1,
        description="What to look up, in a few keywords: the symptom, the product and the error, "
        "e.g. 'VPN disconnects GlobalProtect' or 'printer offline'.",
    )


class CreateTicketArgs(_ToolArgs):
    """Arguments of ``create_ticket``."""

    summary: str = Field(
        min_length=1,
        description="A short title for the helpdesk queue, under 100 characters, "
        "e.g. 'VPN drops every 10 minutes on Windows 11'.",
    )
    details: str = Field(
        min_length=1,
        description="What the user reported, what was already tried and what happened, and how it affects their "
        "work. Never include passwords, codes or other secrets.",
    )
    priority: Priority = Field(
        default="normal",
        description="urgent: a business-critical service or many people are down; high: the user cannot work; "
        "normal: the user can work but is impaired; low: a request or question.",
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        # Models write "High" as often as "high"; refusing it would cost a round trip for nothing.
        return value.strip().lower() if isinstance(value, str) else value


class EscalateArgs(_ToolArgs):
    """Arguments of ``escalate_to_human``."""

    reason: str = Field(
        min_length=1,
        description="Why a person is needed, in one or two sentences, e.g. 'laptop will not boot after a drop; "
        "needs a hardware check'.",
    )


@dataclass(frozen=True, slots=True)
class _Report:
    """How a call went, for the audit log; ``detail`` replaces the model-facing text there when set."""

    outcome: Outcome
    detail: str | None = None


_ToolResult = tuple[str, _Report]


def _ticket_detail(ticket: Ticket) -> str:
    """The audit detail of a filed ticket: JSON, so a redelivered turn in another process can read it back."""
    # A URL too long to keep whole is left out: a cut one would lead nowhere.
    url = ticket.url if ticket.url is None or len(ticket.url) <= 300 else None
    return json.dumps({"ticket": ticket.id[:100], "url": url}, ensure_ascii=False)


def _ticket_in_detail(detail: str) -> Ticket | None:
    try:
        data = json.loads(detail)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ticket"), str):
        return None
    url = data.get("url")
    return Ticket(data["ticket"], url if isinstance(url, str) else None)


def _ticket_in_audit(entries: list[AuditEntry], event_id: str) -> Ticket | None:
    """The ticket an earlier delivery of ``event_id`` filed, as its audit entry recorded it."""
    for entry in reversed(entries):
        if entry.tool == CREATE_TICKET and entry.event_id == event_id and entry.outcome in ("ok", "repeated"):
            ticket = _ticket_in_detail(entry.detail)
            if ticket is not None:
                return ticket
    return None


def _ticket_text(ticket: Ticket) -> str:
    if ticket.id == "filed":
        return "the ticket system did not return a ticket number"
    return f"ticket {ticket.id}" + (f" ({ticket.url})" if ticket.url else "")


def _describe_invalid(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return "; ".join(problems)


class _TurnLocks:
    """One lock per turn, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, turn: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(turn, (asyncio.Lock(), 0))
        self._locks[turn] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[turn]
            if users <= 1:
                del self._locks[turn]
            else:
                self._locks[turn] = (lock, users - 1)


class Toolbox:
    """The tools of one bot: which are enabled, what they need, and the audited way to run them."""

    def __init__(
        self,
        *,
        store: SessionStore,
        knowledge: KnowledgeBase | None = None,
        search_kb: bool = True,
        tickets: TicketWebhook | None = None,
        escalate: bool = True,
        metrics: TurnMetrics | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        """Enable ``search_kb`` when ``search_kb`` and a knowledge base are given, ``create_ticket`` when a ticket
        webhook is, and ``escalate_to_human`` when ``escalate`` (even before any platform registers a channel, so
        the model can say escalation is not set up there). Tickets and hand-overs are limited by ``quotas`` (none
        by default), and a session never has two hand-overs open. The toolbox owns ``tickets`` and closes it."""
        self._store = store
        self._tickets = tickets
        self._metrics = metrics
        self._quotas = SideEffectQuotas(quotas or Quotas())
        self._escalators: dict[str, tuple[Escalator, str]] = {}
        self._filed: OrderedDict[tuple[str, str], Ticket] = OrderedDict()
        self._ticket_locks = _TurnLocks()
        self._sender_locks = _TurnLocks()
        tools: list[BaseTool] = []
        if search_kb and knowledge is not None:
            tools.append(self._search_tool(knowledge))
        if tickets is not None:
            tools.append(self._ticket_tool(tickets))
        if escalate:
            tools.append(self._escalate_tool())
        self._tools = {tool.name: tool for tool in tools}

    def register_escalator(self, platform: str, escalator: Escalator, *, channel: str) -> None:
        """Send ``escalate_to_human`` calls of turns on ``platform`` to ``escalator``, which posts to ``channel``."""
        self._escalators[platform] = (escalator, channel)

    @property
    def tools(self) -> list[BaseTool]:
        """The enabled tools, for ``model.bind_tools()``: ``search_kb``, ``create_ticket``, ``escalate_to_human``."""
        return list(self._tools.values())

    async def run(self, call: ToolCall, facts: TurnFacts) -> ToolMessage:
        """Run one tool call of the model's for the turn ``facts`` describes, audit it, and return what the model
        should read. Never raises, except :class:`asyncio.CancelledError`: an unknown tool, invalid arguments or a
        failure become an error message. ``artifact`` of the result holds the outcome
        (``ok``, ``error``, ``not_configured`` or ``repeated``)."""
        name, args, call_id = call["name"], call["args"], call.get("id") or ""
        started, clock = time.time(), time.perf_counter()
        content, report = await self._execute(name, args, call_id, facts)
        latency_ms = (time.perf_counter() - clock) * 1000
        await self._audit(facts, name, args, report, content, started=started, latency_ms=latency_ms)
        if self._metrics is not None:
            # A name the model made up is counted as "unknown", so it cannot grow the metric's label set.
            self._metrics.tool_calls.labels(name if name in self._tools else "unknown", report.outcome).inc()
        return ToolMessage(
            content,
            tool_call_id=call_id,
            name=name,
            status="success" if report.outcome in ("ok", "repeated") else "error",
            artifact=report.outcome,
        )

    async def aclose(self) -> None:
        """Close the ticket webhook's connections. Idempotent."""
        if self._tickets is not None:
            await self._tickets.aclose()

    async def _execute(self, name: str, args: dict[str, Any], call_id: str, facts: TurnFacts) -> _ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            return f"There is no tool named {name!r}. Available tools: {available}.", _Report("error")
        try:
            message = await tool.ainvoke(tool_call(name=name, args={**args, "facts": facts}, id=call_id))
        except ValidationError as exc:
            return f"Invalid arguments for {name}: {_describe_invalid(exc)}. Call it again with valid ones.", _Report(
                "error"
            )
        except Exception as exc:
            # A bug in a tool or a store that fails must not take the turn down with it; the model is told instead.
            log.exception("tool %s failed", name, extra={"session_id": facts.key.id, "tool": name})
            self._count_error(exc)
            return f"The {name} tool failed unexpectedly ({type(exc).__name__}). Do not retry it.", _Report("error")
        return message.text, cast(_Report, message.artifact)

    async def _audit(
        self,
        facts: TurnFacts,
        name: str,
        args: Mapping[str, Any],
        report: _Report,
        content: str,
        *,
        started: float,
        latency_ms: float,
    ) -> None:
        entry = AuditEntry(
            time=started,
            session_id=facts.key.id,
            event_id=facts.event_id,
            tool=_shorten(name, 64),
            arguments=redact_arguments(args),
            outcome=report.outcome,
            detail=_shorten(redact_text(report.detail or content), DETAIL_CHARS),
            latency_ms=round(latency_ms, 3),
        )
        extra = {
            "session_id": entry.session_id,
            "tool": entry.tool,
            "outcome": entry.outcome,
            "latency_ms": round(latency_ms, 1),
        }
        log.info("tool %s: %s in %.0f ms", entry.tool, entry.outcome, latency_ms, extra=extra)
        try:
            await self._store.append_audit(
                facts.key, entry, platform=facts.platform, user=facts.user, fence=facts.context.fence
            )
        except StoreUnavailable as exc:
            log.warning("tool call %s not audited: %s", entry.tool, exc, extra=extra)
        except Exception:
            log.exception("tool call %s not audited", entry.tool, extra=extra)

    def _count_error(self, exc: Exception) -> None:
        if self._metrics is not None:
            self._metrics.count_error(exc)

    # --- search_kb ---

    def _search_tool(self, knowledge: KnowledgeBase) -> BaseTool:
        async def search_kb(query: str, facts: TurnFacts) -> _ToolResult:
            return self._search(knowledge, query), _Report("ok")

        articles = ", ".join(knowledge.articles[:30])
        return StructuredTool.from_function(
            coroutine=search_kb,
            name=SEARCH_KB,
            description="Search the IT helpdesk knowledge base for how-to articles. Use it before giving "
            f"troubleshooting steps, and cite the article you used. Returns up to {SEARCH_RESULTS} passages, each "
            f"with its article title and section. Articles: {articles or 'none yet'}.",
            args_schema=SearchKbArgs,
            response_format="content_and_artifact",
        )

    @staticmethod
    def _search(knowledge: KnowledgeBase, query: str) -> str:
        sections = list(
            dict.fromkeys(knowledge.steps_for(hit.section) for hit in knowledge.search(query, k=SEARCH_RESULTS))
        )
        if not sections:
            return (
                "No matching article in the knowledge base. Do not invent a procedure: ask for details, answer "
                "only what you are sure of, or offer a ticket."
            )
        passages = [
            f"[{n}] {s.article} — {s.heading} (kb/{s.slug}.md)\n{_shorten(s.body, PASSAGE_CHARS)}"
            for n, s in enumerate(sections, 1)
        ]
        return "Knowledge-base passages (cite the article title):\n\n" + "\n\n".join(passages)

    # --- create_ticket ---

    def _ticket_tool(self, tickets: TicketWebhook) -> BaseTool:
        async def create_ticket(
            summary: str, details: str, facts: TurnFacts, priority: Priority = "normal"
        ) -> _ToolResult:
            return await self._create_ticket(tickets, facts, summary=summary, details=details, priority=priority)

        return StructuredTool.from_function(
            coroutine=create_ticket,
            name=CREATE_TICKET,
            description="File a ticket with the IT helpdesk when the problem cannot be solved in this chat (it needs "
            "an administrator, a technician or an approval) or the user asks for one. The conversation, its "
            "summary and the known facts about the user's environment are attached automatically, so do not ask "
            "the user to repeat them. One ticket per user message. Returns the ticket number to give the user.",
            args_schema=CreateTicketArgs,
            response_format="content_and_artifact",
        )

    async def _create_ticket(
        self, tickets: TicketWebhook, facts: TurnFacts, *, summary: str, details: str, priority: Priority
    ) -> _ToolResult:
        turn = (facts.key.id, facts.event_id)
        # Serialised per user, then per turn: a model that calls create_ticket twice in one answer, in parallel, files
        # one ticket, and one user's sessions cannot race each other past the daily quota.
        async with self._sender_locks.hold((CREATE_TICKET, facts.quota_key)), self._ticket_locks.hold(turn):
            audit = await self._audit_log(facts) if turn not in self._filed else []
            earlier = self._filed.get(turn) or _ticket_in_audit(audit, facts.event_id)
            if earlier is not None:
                self._remember(turn, earlier)
                return (
                    f"A ticket was already filed for this message: {_ticket_text(earlier)}. Do not file another; "
                    "give the user this one.",
                    _Report("repeated", _ticket_detail(earlier)),
                )
            refusal = self._quotas.ticket_refusal(facts.quota_key, audit)
            if refusal is not None:
                log.warning("ticket refused by quota", extra={"session_id": facts.key.id})
                return f"The ticket was not filed. {refusal}", _Report("refused")
            payload = self._ticket_payload(facts, summary=summary, details=details, priority=priority)
            try:
                ticket = await tickets.file(payload, idempotency_key=payload["idempotency_key"])
            except TicketFailed as exc:
                self._count_error(exc)
                return (
                    f"The ticket could not be filed: {exc}. Tell the user, and suggest trying again later or "
                    "contacting the helpdesk directly.",
                    _Report("error"),
                )
            self._remember(turn, ticket)
            self._quotas.ticket_filed(facts.quota_key)
        if ticket.id == "filed":
            text = "The ticket was filed, but the ticket system returned no ticket number. Tell the user it was filed."
        else:
            text = f"Filed {_ticket_text(ticket)}. Give the user the ticket number" + (
                " and link." if ticket.url else "."
            )
        return text, _Report("ok", _ticket_detail(ticket))

    def _remember(self, turn: tuple[str, str], ticket: Ticket) -> None:
        self._filed[turn] = ticket
        self._filed.move_to_end(turn)
        while len(self._filed) > FILED_TURNS_KEPT:
            self._filed.popitem(last=False)

    async def _audit_log(self, facts: TurnFacts) -> list[AuditEntry]:
        """The session's audit log: earlier tickets and hand-overs, from any process. Empty when the store is down:
        filing anyway is the lesser harm (the Idempotency-Key lets the ticket system drop a duplicate)."""
        try:
            return await self._store.audit(facts.key)
        except StoreUnavailable as exc:
            log.warning("could not read the audit log: %s", exc, extra={"session_id": facts.key.id})
            return []

    @staticmethod
    def _ticket_payload(facts: TurnFacts, *, summary: str, details: str, priority: Priority) -> dict[str, Any]:
        # Whatever leaves for the ticket system is redacted: a password the user typed has no place in a ticket.
        context, now = facts.context, time.time()
        transcript = [{"role": m.role, "text": redact_text(m.content), "time": _iso(m.ts)} for m in context.messages]
        transcript.append({"role": "user", "text": redact_text(facts.text), "time": _iso(now)})
        return {
            "idempotency_key": f"{facts.reference}:{facts.event_id}",
            "session_id": facts.reference,
            "platform": facts.platform,
            "user": facts.user_reference,
            "summary": redact_text(summary),
            "details": redact_text(details),
            "priority": priority,
            "entities": {name: redact_text(e.value) for name, e in sorted(context.entities.items())},
            "conversation_summary": None if context.summary is None else redact_text(context.summary),
            "transcript": transcript,
            "created": _iso(now),
        }

    # --- escalate_to_human ---

    def _escalate_tool(self) -> BaseTool:
        async def escalate_to_human(reason: str, facts: TurnFacts) -> _ToolResult:
            return await self._escalate(facts, reason)

        return StructuredTool.from_function(
            coroutine=escalate_to_human,
            name=ESCALATE_TO_HUMAN,
            description="Hand the conversation to a person on the IT team: when the user asks for a human, is stuck "
            "after the usual steps, is upset, or the issue is urgent, a security incident or needs physical "
            "access. Posts a hand-over with the conversation to the team's escalation channel; a person then "
            "follows up in this conversation.",
            args_schema=EscalateArgs,
            response_format="content_and_artifact",
        )

    async def _escalate(self, facts: TurnFacts, reason: str) -> _ToolResult:
        registered = self._escalators.get(facts.platform)
        if registered is None:
            ticket = "filing a ticket with create_ticket or " if CREATE_TICKET in self._tools else ""
            return (
                f"Escalation to a person is not configured on {facts.platform}, so nobody was notified. Do not say "
                f"that someone will follow up; suggest {ticket}contacting the IT helpdesk directly instead.",
                _Report("not_configured"),
            )
        escalator, channel = registered
        async with self._sender_locks.hold((ESCALATE_TO_HUMAN, facts.quota_key)):
            audit = await self._audit_log(facts)
            open_ = self._quotas.open_escalation(facts.key.id, audit)
            if open_ is not None:
                return (
                    f"This conversation was already handed to a person at {_iso(open_.since)} ({open_.reference}) "
                    "and nobody has closed it yet. Do not escalate again; tell the user a person will follow up in "
                    "this conversation.",
                    _Report("repeated"),
                )
            refusal = self._quotas.escalation_refusal(facts.quota_key, audit)
            if refusal is not None:
                log.warning("escalation refused by quota", extra={"session_id": facts.key.id})
                return f"Nobody was notified. {refusal}", _Report("refused")
            try:
                reference = await escalator(self._handover(facts, reason))
            except EscalationFailed as exc:
                self._count_error(exc)
                return (
                    f"The escalation could not be posted: {exc}. Tell the user, and suggest a ticket or contacting "
                    "the IT helpdesk directly.",
                    _Report("error"),
                )
            self._quotas.escalated(facts.key.id, facts.quota_key, reference)
        return (
            f"Escalated to {channel}: {reference}. Tell the user a person will follow up in this conversation.",
            _Report("ok", escalation_detail(channel, reference)),
        )

    @staticmethod
    def _handover(facts: TurnFacts, reason: str) -> str:
        """The post a person reads first: who, why, what is known, and how the conversation ended.

        Plain text, redacted: the adapters post it as inert text, since it quotes the user (and the model, which may
        be repeating the user's instructions), and must not render as links, formatting or mentions.
        """
        context = facts.context
        lines = [
            "Escalation from Supportbot: a user needs a person.",
            f"Platform: {facts.platform}",
            f"Session: {facts.reference}",
            f"User: {facts.user_reference}",
            f"Reason: {_shorten(_one_line(reason), 300)}",
        ]
        if context.summary:
            lines += ["", "Conversation summary:", _shorten(context.summary, HANDOVER_SUMMARY_CHARS)]
        if context.entities:
            lines += ["", entities_block(context.entities)]
        recent = [(m.role, m.content) for m in context.messages] + [("user", facts.text)]
        lines += ["", f"Last {min(len(recent), HANDOVER_MESSAGES)} messages:"]
        lines += [
            f"- {role}: {_shorten(_one_line(text), HANDOVER_MESSAGE_CHARS)}"
            for role, text in recent[-HANDOVER_MESSAGES:]
        ]
        return _shorten(redact_text("\n".join(lines)), HANDOVER_CHARS)
