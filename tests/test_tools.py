"""The model's tools over real HTTP: tickets filed once per turn with the conversation attached, retried when the
webhook may recover, escalations handed over with what a person needs, and every call audited with secrets
redacted."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.utils.function_calling import convert_to_openai_tool

from bot.errors import EscalationFailed, StoreUnavailable, TicketFailed
from bot.kb import SAMPLE_KB, KnowledgeBase
from bot.memory import Entity, SessionContext, SessionStore, StoreLimits, open_store
from bot.memory.base import AuditEntry
from bot.memory.memory import MemoryStore
from bot.messages import StoredMessage
from bot.metrics import TurnMetrics
from bot.redact import REDACTED, redact_arguments, redact_text
from bot.session import SessionKey
from bot.tools import HANDOVER_CHARS, Ticket, TicketWebhook, Toolbox, TurnFacts
from tests.conftest import StoreFactory, second_client
from tests.fakes.webhook_server import FakeTicketWebhook

KB_DIR = SAMPLE_KB
TOKEN = "hook-token-5f2a9c"
KEY = SessionKey(platform="slack", workspace="T1", channel="C1", thread="171.1", user="U1")


def facts(
    event_id: str = "Ev1", *, key: SessionKey = KEY, text: str = "it still drops, please open a ticket"
) -> TurnFacts:
    context = SessionContext(
        messages=(
            StoredMessage("user", "my VPN keeps dropping every 10 minutes", 1_700_000_000.0, "U1", "Ev0"),
            StoredMessage("assistant", "Try restarting the GlobalProtect client.", 1_700_000_005.0),
        ),
        summary="User on Windows 11 with GlobalProtect; VPN drops every 10 minutes.",
        entities={"os": Entity("Windows 11", 1.0), "vpn_client": Entity("GlobalProtect", 2.0)},
    )
    return TurnFacts(key=key, event_id=event_id, platform=key.platform, user="U1", context=context, text=text)


def call(name: str, call_id: str = "call-1", **args: Any) -> Any:
    return tool_call(name=name, args=args, id=call_id)


TICKET_ARGS = {
    "summary": "VPN drops every 10 minutes",
    "details": "Restarted the client; no change.",
    "priority": "high",
}


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    store = open_store("memory://")
    yield store
    await store.aclose()


@pytest.fixture
async def webhook() -> AsyncIterator[FakeTicketWebhook]:
    async with FakeTicketWebhook() as fake:
        yield fake


def hook(fake: FakeTicketWebhook, **options: Any) -> TicketWebhook:
    options = {"token": TOKEN, "timeout": 2.0, "backoff": 0.01, **options}
    return TicketWebhook(fake.url, **options)


@pytest.fixture
async def toolbox(store: SessionStore, webhook: FakeTicketWebhook) -> AsyncIterator[Toolbox]:
    box = Toolbox(store=store, knowledge=KnowledgeBase.from_directory(KB_DIR), tickets=hook(webhook))
    yield box
    await box.aclose()


# --- the toolbox ---------------------------------------------------------------------------------------------------


async def test_tools_are_the_enabled_ones_with_schemas_for_the_model(store: SessionStore) -> None:
    kb = KnowledgeBase.from_directory(KB_DIR)
    full = Toolbox(store=store, knowledge=kb, tickets=TicketWebhook("http://127.0.0.1:9/x"))
    assert [t.name for t in full.tools] == ["search_kb", "create_ticket", "escalate_to_human"]
    schemas = {t.name: convert_to_openai_tool(t)["function"] for t in full.tools}
    assert schemas["search_kb"]["parameters"]["required"] == ["query"]
    ticket = schemas["create_ticket"]["parameters"]
    assert set(ticket["properties"]) == {"summary", "details", "priority"}  # the turn itself is injected, not asked
    assert ticket["properties"]["priority"]["enum"] == ["low", "normal", "high", "urgent"]
    assert all(p.get("description") for s in schemas.values() for p in s["parameters"]["properties"].values())
    assert "VPN not connecting or dropping" in schemas["search_kb"]["description"]
    await full.aclose()

    assert [t.name for t in Toolbox(store=store).tools] == ["escalate_to_human"]
    assert [t.name for t in Toolbox(store=store, knowledge=kb, search_kb=False, escalate=False).tools] == []


async def test_unknown_tool_and_invalid_arguments_are_told_to_the_model_and_audited(
    store: SessionStore, webhook: FakeTicketWebhook
) -> None:
    metrics = TurnMetrics()
    toolbox = Toolbox(
        store=store, knowledge=KnowledgeBase.from_directory(KB_DIR), tickets=hook(webhook), metrics=metrics
    )
    unknown = await toolbox.run(call("reboot_server", host="db1", api_key="sk-live-0123456789abcdef"), facts())
    assert unknown.status == "error" and "reboot_server" in unknown.text and "create_ticket" in unknown.text

    invalid = await toolbox.run(call("create_ticket", summary="VPN", priority="someday"), facts())
    assert invalid.status == "error" and invalid.artifact == "error"
    assert "details" in invalid.text and "priority" in invalid.text

    audit = await store.audit(KEY)
    assert [(e.tool, e.outcome) for e in audit] == [("reboot_server", "error"), ("create_ticket", "error")]
    assert audit[0].arguments == {"host": "db1", "api_key": REDACTED}
    assert metrics.tool_calls.labels("unknown", "error")._value.get() == 1, "a made-up name is not a label"
    assert metrics.tool_calls.labels("create_ticket", "error")._value.get() == 1
    assert b"reboot_server" not in metrics.render()
    await toolbox.aclose()


async def test_disabled_tool_is_unknown(store: SessionStore) -> None:
    box = Toolbox(store=store)
    result = await box.run(call("create_ticket", **TICKET_ARGS), facts())
    assert result.status == "error" and "escalate_to_human" in result.text


# --- search_kb ------------------------------------------------------------------------------------------------------


async def test_search_kb_returns_cited_passages_from_the_repo_kb(store: SessionStore, toolbox: Toolbox) -> None:
    result = await toolbox.run(call("search_kb", query="VPN keeps disconnecting GlobalProtect"), facts())
    assert result.status == "success" and result.tool_call_id == "call-1" and result.name == "search_kb"
    assert "VPN not connecting or dropping —" in result.text
    assert result.text.count("\n[") <= 3
    assert len(result.text) < 3 * 700

    none = await toolbox.run(call("search_kb", query="zebra xylophone"), facts())
    assert none.status == "success" and "No matching article" in none.text
    assert [e.outcome for e in await store.audit(KEY)] == ["ok", "ok"]


# --- create_ticket --------------------------------------------------------------------------------------------------


async def test_ticket_is_filed_once_with_the_conversation(
    store: SessionStore, toolbox: Toolbox, webhook: FakeTicketWebhook
) -> None:
    turn = facts()
    result = await toolbox.run(call("create_ticket", **TICKET_ARGS), turn)

    assert result.status == "success" and result.artifact == "ok"
    assert "INC-0001" in result.text and f"{webhook.origin}/tickets/INC-0001" in result.text
    [request] = webhook.requests
    assert request.method == "POST" and request.path == "/hooks/tickets"
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["idempotency-key"] == f"{KEY.id}:Ev1"
    body = request.json
    assert body["idempotency_key"] == f"{KEY.id}:Ev1"
    assert (body["session_id"], body["platform"], body["user"]) == (KEY.id, "slack", "U1")
    assert (body["summary"], body["details"], body["priority"]) == (
        TICKET_ARGS["summary"],
        TICKET_ARGS["details"],
        "high",
    )
    assert body["entities"] == {"os": "Windows 11", "vpn_client": "GlobalProtect"}
    assert body["conversation_summary"] == turn.context.summary
    assert [(m["role"], m["text"]) for m in body["transcript"]] == [
        ("user", "my VPN keeps dropping every 10 minutes"),
        ("assistant", "Try restarting the GlobalProtect client."),
        ("user", "it still drops, please open a ticket"),
    ]
    assert body["transcript"][0]["time"] == "2023-11-14T22:13:20+00:00"
    created = datetime.fromisoformat(body["created"])
    assert created.utcoffset() is not None and abs(created.timestamp() - time.time()) < 60

    [entry] = await store.audit(KEY)
    assert (entry.tool, entry.outcome, entry.event_id, entry.session_id) == ("create_ticket", "ok", "Ev1", KEY.id)
    assert entry.arguments == TICKET_ARGS and entry.latency_ms > 0
    assert json.loads(entry.detail)["ticket"] == "INC-0001"


async def test_a_second_call_in_the_same_turn_files_nothing(
    store: SessionStore, toolbox: Toolbox, webhook: FakeTicketWebhook
) -> None:
    first = await toolbox.run(call("create_ticket", **TICKET_ARGS), facts())
    again = await toolbox.run(call("create_ticket", "call-2", summary="VPN again", details="same"), facts())

    assert len(webhook.requests) == 1
    assert again.status == "success" and again.artifact == "repeated" and "INC-0001" in again.text
    assert "INC-0001" in first.text
    assert [e.outcome for e in await store.audit(KEY)] == ["ok", "repeated"]


async def test_concurrent_calls_of_one_turn_file_one_ticket(toolbox: Toolbox, webhook: FakeTicketWebhook) -> None:
    results = await asyncio.gather(
        *(toolbox.run(call("create_ticket", f"call-{n}", **TICKET_ARGS), facts()) for n in range(4))
    )
    assert len(webhook.requests) == 1
    assert sorted(str(r.artifact) for r in results) == ["ok", "repeated", "repeated", "repeated"]
    assert all("INC-0001" in r.text for r in results)


async def test_a_redelivery_in_another_process_files_nothing(store: SessionStore, webhook: FakeTicketWebhook) -> None:
    first = Toolbox(store=store, tickets=hook(webhook))
    await first.run(call("create_ticket", **TICKET_ARGS), facts())
    await first.aclose()

    other_process = Toolbox(store=store, tickets=hook(webhook))
    again = await other_process.run(call("create_ticket", **TICKET_ARGS), facts())
    assert len(webhook.requests) == 1
    assert again.artifact == "repeated" and "INC-0001" in again.text and "/tickets/INC-0001" in again.text

    new_event = await other_process.run(call("create_ticket", **TICKET_ARGS), facts("Ev2"))
    assert len(webhook.requests) == 2 and new_event.artifact == "ok" and "INC-0002" in new_event.text
    assert webhook.requests[1].headers["idempotency-key"] == f"{KEY.id}:Ev2"
    await other_process.aclose()


async def test_a_different_session_with_the_same_event_id_gets_its_own_ticket(
    toolbox: Toolbox, webhook: FakeTicketWebhook
) -> None:
    other = SessionKey(platform="slack", workspace="T1", channel="C2", thread=None, user="U1")
    await toolbox.run(call("create_ticket", **TICKET_ARGS), facts())
    result = await toolbox.run(call("create_ticket", **TICKET_ARGS), facts(key=other))
    assert result.artifact == "ok" and "INC-0002" in result.text and len(webhook.requests) == 2


async def test_a_failed_ticket_can_be_tried_again_in_the_same_turn(
    store: SessionStore, webhook: FakeTicketWebhook
) -> None:
    box = Toolbox(store=store, tickets=hook(webhook, retries=0))
    webhook.fail_next(503)
    failed = await box.run(call("create_ticket", **TICKET_ARGS), facts())
    retried = await box.run(call("create_ticket", **TICKET_ARGS), facts())
    assert failed.artifact == "error" and retried.artifact == "ok" and "INC-0001" in retried.text
    await box.aclose()


@pytest.mark.parametrize("status", [500, 502, 429])
async def test_retryable_answers_are_retried_then_the_ticket_is_filed(
    toolbox: Toolbox, webhook: FakeTicketWebhook, status: int
) -> None:
    webhook.fail_next(status, times=2, retry_after="0")
    result = await toolbox.run(call("create_ticket", **TICKET_ARGS), facts())
    assert result.artifact == "ok" and "INC-0001" in result.text
    assert len(webhook.requests) == 3
    assert len({r.headers["idempotency-key"] for r in webhook.requests}) == 1


async def test_retry_after_is_honoured(webhook: FakeTicketWebhook) -> None:
    tickets = hook(webhook, backoff=0.001)
    webhook.fail_next(429, retry_after="1")
    started = time.monotonic()
    ticket = await tickets.file({"summary": "x"}, idempotency_key="s:e")
    assert time.monotonic() - started >= 1.0
    assert ticket.id == "INC-0001" and len(webhook.requests) == 2
    await tickets.aclose()


async def test_a_4xx_is_not_retried_and_the_model_is_told(store: SessionStore, webhook: FakeTicketWebhook) -> None:
    metrics = TurnMetrics()
    box = Toolbox(store=store, tickets=hook(webhook), metrics=metrics)
    webhook.fail_next(400, times=5)
    result = await box.run(call("create_ticket", **TICKET_ARGS), facts())

    assert len(webhook.requests) == 1
    assert result.status == "error" and result.artifact == "error"
    assert "could not be filed" in result.text and "HTTP 400" in result.text
    [entry] = await store.audit(KEY)
    assert entry.outcome == "error" and "HTTP 400" in entry.detail
    assert b'supportbot_errors_total{kind="ticket_failed"} 1.0' in metrics.render()
    await box.aclose()


async def test_failures_never_show_the_url_query_or_the_token(webhook: FakeTicketWebhook) -> None:
    tickets = TicketWebhook(webhook.url + "?code=q-s3cret", token=TOKEN, retries=2, backoff=0.001)
    webhook.fail_next(500, times=3)
    with pytest.raises(TicketFailed) as failed:
        await tickets.file({"summary": "x"}, idempotency_key="s:e")
    message = str(failed.value)
    assert len(webhook.requests) == 3 and webhook.requests[0].query == {"code": "q-s3cret"}
    assert "3 attempt" in message and "HTTP 500" in message and "\n" not in message
    assert "q-s3cret" not in message and TOKEN not in message and webhook.origin not in message
    await tickets.aclose()


async def test_a_webhook_that_hangs_times_out(store: SessionStore, webhook: FakeTicketWebhook) -> None:
    box = Toolbox(store=store, tickets=hook(webhook, timeout=0.2, retries=1))
    webhook.fail_next("hang", times=2)
    result = await box.run(call("create_ticket", **TICKET_ARGS), facts())  # returns although the webhook never does
    assert result.artifact == "error" and "no answer within 0.2 s" in result.text
    assert len(webhook.requests) == 2
    await box.aclose()


async def test_connection_errors_are_retried(webhook: FakeTicketWebhook) -> None:
    webhook.fail_next("drop")
    tickets = hook(webhook)
    assert (await tickets.file({}, idempotency_key="s:e")).id == "INC-0001"
    assert len(webhook.requests) == 2
    await tickets.aclose()

    unreachable = TicketWebhook("http://127.0.0.1:9/hooks", retries=1, backoff=0.001)
    with pytest.raises(TicketFailed, match="connection failed"):
        await unreachable.file({}, idempotency_key="s:e")
    await unreachable.aclose()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            {"ticket": {"key": "HD-12", "id": 10012, "html_url": "https://hd.example/HD-12"}},
            ("HD-12", "https://hd.example/HD-12"),
        ),
        (
            {"result": {"number": "INC0010001", "sys_id": "abc", "link": "https://sn.example/x"}},
            ("INC0010001", "https://sn.example/x"),
        ),
        ({"ticket_id": 7}, ("7", None)),
        ({"data": {"id": "42", "self": "https://api.example/42"}}, ("42", "https://api.example/42")),
        ({"status": "queued"}, ("filed", None)),
        (["not", "an", "object"], ("filed", None)),
        (b"created", ("filed", None)),
    ],
)
async def test_common_answer_shapes(webhook: FakeTicketWebhook, answer: Any, expected: tuple[str, str | None]) -> None:
    webhook.answer = lambda ticket_id, url: answer
    webhook.status = 201
    tickets = hook(webhook)
    assert await tickets.file({}, idempotency_key="s:e") == Ticket(*expected)
    await tickets.aclose()


async def test_a_ticket_without_a_number_still_counts_as_filed_once(
    toolbox: Toolbox, webhook: FakeTicketWebhook
) -> None:
    webhook.answer = lambda ticket_id, url: b"ok"
    first = await toolbox.run(call("create_ticket", **TICKET_ARGS), facts())
    again = await toolbox.run(call("create_ticket", **TICKET_ARGS), facts())
    assert first.artifact == "ok" and "no ticket number" in first.text
    assert again.artifact == "repeated" and len(webhook.requests) == 1


async def test_the_webhook_session_is_lazy_and_closed(webhook: FakeTicketWebhook) -> None:
    tickets = hook(webhook, token=None)
    await tickets.aclose()  # never used: nothing to close
    tickets = hook(webhook, token=None)
    await tickets.file({}, idempotency_key="s:e")
    assert "authorization" not in webhook.requests[0].headers
    await tickets.aclose()
    await tickets.aclose()
    with pytest.raises(TicketFailed, match="closed"):
        await tickets.file({}, idempotency_key="s:e")


async def test_secrets_stay_out_of_the_ticket_and_the_audit(
    store: SessionStore, toolbox: Toolbox, webhook: FakeTicketWebhook
) -> None:
    turn = facts(text="my password: hunter2 does not work, token xoxb-1234-5678-abcdefgh")
    args = {"summary": "Login fails", "details": "User gave password=hunter2 and key AKIAIOSFODNN7EXAMPLE"}
    await toolbox.run(call("create_ticket", **args), turn)

    sent = json.dumps(webhook.requests[0].json)
    assert "hunter2" not in sent and "xoxb-1234" not in sent and "AKIAIOSFODNN7EXAMPLE" not in sent
    assert "password: [redacted]" in sent
    [entry] = await store.audit(KEY)
    assert entry.arguments["details"] == "User gave password=[redacted] and key [redacted]"


# --- escalate_to_human ----------------------------------------------------------------------------------------------


class Posts:
    """An escalator standing in for an adapter's post path: records what it was asked to post."""

    def __init__(self, *, fail: bool = False) -> None:
        self.texts: list[str] = []
        self.fail = fail

    async def __call__(self, text: str) -> str:
        if self.fail:
            raise EscalationFailed("Slack refused the post: channel_not_found")
        self.texts.append(text)
        return f"https://slack.example/archives/C-ESC/p{len(self.texts)}"


async def test_escalation_posts_a_handover(store: SessionStore, toolbox: Toolbox) -> None:
    posts = Posts()
    toolbox.register_escalator("slack", posts, channel="C-ESC")
    result = await toolbox.run(call("escalate_to_human", reason="Laptop will not boot after a drop"), facts())

    assert result.status == "success" and result.artifact == "ok"
    assert result.text == (
        "Escalated to C-ESC: https://slack.example/archives/C-ESC/p1. "
        "Tell the user a person will follow up in this conversation."
    )
    [text] = posts.texts
    for expected in (
        "slack",
        KEY.id,
        "U1",
        "Laptop will not boot after a drop",
        "User on Windows 11 with GlobalProtect; VPN drops every 10 minutes.",
        "os: Windows 11",
        "vpn client: GlobalProtect",
        "my VPN keeps dropping every 10 minutes",
        "it still drops, please open a ticket",
    ):
        assert expected in text
    [entry] = await store.audit(KEY)
    assert (entry.tool, entry.outcome, entry.arguments) == (
        "escalate_to_human",
        "ok",
        {"reason": "Laptop will not boot after a drop"},
    )


async def test_the_handover_stays_short_and_recent(toolbox: Toolbox) -> None:
    posts = Posts()
    toolbox.register_escalator("slack", posts, channel="C-ESC")
    messages = tuple(StoredMessage("user", f"message {n} " + "x" * 2_000, float(n)) for n in range(30))
    long_turn = TurnFacts(
        key=KEY,
        event_id="Ev9",
        platform="slack",
        user="U1",
        context=SessionContext(messages=messages, summary="s" * 5_000),
        text="the newest " + "y" * 5_000,
    )
    await toolbox.run(call("escalate_to_human", reason="r" * 2_000), long_turn)
    [text] = posts.texts
    assert len(text) <= HANDOVER_CHARS
    assert "message 25 " in text and "message 24 " not in text and "the newest" in text


async def test_no_escalator_for_the_platform_is_not_configured(store: SessionStore, toolbox: Toolbox) -> None:
    posts = Posts()
    toolbox.register_escalator("discord", posts, channel="123")
    result = await toolbox.run(call("escalate_to_human", reason="needs a person"), facts())

    assert posts.texts == []
    assert result.artifact == "not_configured" and result.status == "error"
    assert "not configured on slack" in result.text and "create_ticket" in result.text
    assert [e.outcome for e in await store.audit(KEY)] == ["not_configured"]


async def test_a_failed_escalation_is_told_to_the_model(store: SessionStore, toolbox: Toolbox) -> None:
    toolbox.register_escalator("slack", Posts(fail=True), channel="C-ESC")
    result = await toolbox.run(call("escalate_to_human", reason="needs a person"), facts())
    assert result.artifact == "error" and "channel_not_found" in result.text
    [entry] = await store.audit(KEY)
    assert entry.outcome == "error" and "channel_not_found" in entry.detail


async def test_an_escalator_bug_does_not_break_the_turn(toolbox: Toolbox, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(text: str) -> str:
        raise KeyError("oops")

    toolbox.register_escalator("slack", broken, channel="C-ESC")
    result = await toolbox.run(call("escalate_to_human", reason="needs a person"), facts())
    assert result.artifact == "error" and "KeyError" in result.text
    assert any(r.levelno == logging.ERROR and r.name == "supportbot.tools" for r in caplog.records)


# --- audit and logs -------------------------------------------------------------------------------------------------


async def test_every_call_is_logged_without_argument_values(toolbox: Toolbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="supportbot.tools")
    await toolbox.run(call("search_kb", query="printer offline 0xdeadbeef"), facts())
    [record] = [r for r in caplog.records if r.name == "supportbot.tools"]
    assert record.levelno == logging.INFO
    assert (record.session_id, record.tool, record.outcome) == (KEY.id, "search_kb", "ok")  # type: ignore[attr-defined]
    assert record.latency_ms >= 0  # type: ignore[attr-defined]
    assert "printer" not in record.getMessage() and "0xdeadbeef" not in record.getMessage()


class DownAuditStore(MemoryStore):
    async def append_audit(
        self, key: SessionKey, entry: AuditEntry, *, platform: str, user: str, fence: int = 0
    ) -> None:
        raise StoreUnavailable("redis is down")

    async def audit(self, key: SessionKey) -> list[AuditEntry]:
        raise StoreUnavailable("redis is down")


async def test_an_unavailable_store_still_returns_the_result(
    webhook: FakeTicketWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    box = Toolbox(store=DownAuditStore(), tickets=hook(webhook))
    result = await box.run(call("create_ticket", **TICKET_ARGS), facts())
    assert result.artifact == "ok" and "INC-0001" in result.text
    again = await box.run(call("create_ticket", **TICKET_ARGS), facts())
    assert again.artifact == "repeated" and len(webhook.requests) == 1  # the in-process record still holds
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not audited" in w and "redis is down" in w for w in warnings)
    await box.aclose()


async def test_tickets_are_filed_once_across_store_backends(
    backend: str, store_factory: StoreFactory, webhook: FakeTicketWebhook
) -> None:
    first_store = store_factory(StoreLimits())
    first = Toolbox(store=first_store, tickets=hook(webhook))
    second = Toolbox(store=second_client(backend, store_factory, first_store), tickets=hook(webhook))
    try:
        filed = await first.run(call("create_ticket", **TICKET_ARGS), facts())
        again = await second.run(call("create_ticket", **TICKET_ARGS), facts())
        other = await second.run(call("create_ticket", **TICKET_ARGS), facts("Ev2"))
    finally:
        await first.aclose()
        await second.aclose()
    assert (filed.artifact, again.artifact, other.artifact) == ("ok", "repeated", "ok")
    assert "INC-0001" in again.text and len(webhook.requests) == 2
    audit = await first_store.audit(KEY)
    assert [(e.event_id, e.outcome) for e in audit] == [("Ev1", "ok"), ("Ev1", "repeated"), ("Ev2", "ok")]


# --- redaction ------------------------------------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _token(prefix: str, alphabet: str, size: int) -> st.SearchStrategy[str]:
    # A digit in every generated secret keeps it from ever occurring in the digit-free prose around it.
    return st.text(alphabet, min_size=size - 1, max_size=size + 20).map(lambda body: f"{prefix}7{body}")


tokens = st.one_of(
    _token("sk-", _ALNUM + "-_", 20),
    _token("sk-proj-", _ALNUM, 40),
    st.sampled_from(["xoxb-", "xoxa-", "xoxp-", "xoxr-"]).flatmap(lambda p: _token(p, _ALNUM + "-", 12)),
    _token("ghp_", _ALNUM, 36),
    st.text(_UPPER_DIGITS, min_size=15, max_size=15).map(lambda body: f"AKIA7{body}"),
)
secret_values = st.text(_ALNUM + "!#$%()*+./@^", min_size=3, max_size=30).map(lambda v: f"7{v}")
assigned = st.tuples(
    st.sampled_from(["password", "Password", "passwd", "db_password", "api_key", "client_secret", "token", "APIKEY"]),
    st.sampled_from([": ", "=", " = ", ":"]),
    secret_values,
)
# No "b": prose never spells "bearer", so nothing in it looks like a secret.
prose = st.text("acdefghijklmnopqrstuvwxyz .!?\n", max_size=40)


@given(prose, tokens, prose)
def test_tokens_are_redacted_wherever_they_stand(before: str, token: str, after: str) -> None:
    redacted = redact_text(f"{before} {token} {after}")
    assert token not in redacted and token[4:] not in redacted
    assert redacted == f"{before} {REDACTED} {after}"


@given(prose, assigned, prose)
def test_assigned_secrets_keep_their_name_and_lose_their_value(
    before: str, secret: tuple[str, str, str], after: str
) -> None:
    name, sep, value = secret
    redacted = redact_text(f"{before} {name}{sep}{value} {after}")
    assert value not in redacted
    assert f"{name}{sep}{REDACTED}" in redacted


@given(prose, st.text(_ALNUM + "._~+/=-", min_size=6, max_size=60).map(lambda t: f"7{t}"), prose)
def test_bearer_tokens_are_redacted(before: str, token: str, after: str) -> None:
    redacted = redact_text(f"{before} Authorization: Bearer {token} {after}")
    assert token not in redacted and f"Bearer {REDACTED}" in redacted


@given(st.text("abcdefghijklmnopqrstuvwxyz0123456789 .,!?()\n", max_size=200))
def test_plain_text_is_left_alone(text: str) -> None:
    if "bearer" not in text:
        assert redact_text(text) == text


@settings(max_examples=300)
@given(st.one_of(st.text(), st.tuples(prose, tokens | assigned.map("".join), prose).map(" ".join)))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
secret_keys = st.sampled_from(
    [
        "password",
        "Passwd",
        "new_password",
        "secret",
        "client_secret",
        "token",
        "auth_token",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "credentials",
        "private_key",
    ]
)


@given(secret_keys, json_values, st.dictionaries(st.sampled_from(["query", "summary", "n"]), json_values, max_size=3))
def test_arguments_named_like_secrets_are_redacted_whole(key: str, value: Any, others: dict[str, Any]) -> None:
    redacted = redact_arguments({**others, key: value})
    assert redacted[key] == REDACTED
    assert set(redacted) == {*others, key}


def test_nested_arguments_are_redacted() -> None:
    arguments = {
        "n": 3,
        "flag": True,
        "nested": {"password": "hunter2", "note": "use sk-abcdefghijklmnop1234", "list": ["Bearer abc.def-123", 4]},
    }
    assert redact_arguments(arguments) == {
        "n": 3,
        "flag": True,
        "nested": {"password": REDACTED, "note": f"use {REDACTED}", "list": [f"Bearer {REDACTED}", 4]},
    }


def test_redaction_spares_ordinary_helpdesk_text() -> None:
    for text in (
        "I use sk-learn and my task-manager shows 100% CPU",
        "Basic fixes: restart the client",
        "My password expired yesterday, token prompts keep appearing",
        "Error 0x80070005 on Windows 11",
    ):
        assert redact_text(text) == text
    assert redact_text('{"ticket": "INC-1", "url": "https://hd/x?token=abc"}') == (
        '{"ticket": "INC-1", "url": "https://hd/x?token=[redacted]"}'
    )
    assert redact_text("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----") == REDACTED


async def test_tool_message_is_a_tool_message(toolbox: Toolbox) -> None:
    result = await toolbox.run(
        {"name": "search_kb", "args": {"query": "wifi"}, "id": None, "type": "tool_call"}, facts()
    )
    assert isinstance(result, ToolMessage) and result.tool_call_id == ""
