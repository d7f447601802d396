"""Secrets and PII never reach the ticket system, a hand-over post, the audit log or an export; ordinary helpdesk
text and the knowledge base come through untouched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.export import session_document
from bot.kb import SAMPLE_KB, KnowledgeBase
from bot.memory import SessionStore
from bot.memory.base import SessionContext
from bot.memory.memory import MemoryStore
from bot.messages import StoredMessage
from bot.redact import REDACTED, find_secrets, redact_text
from bot.session import SessionKey
from bot.tools import TicketWebhook, Toolbox, TurnFacts
from tests.fakes.models import RecordingModel
from tests.fakes.webhook_server import FakeTicketWebhook
from tests.helpers import make_bot, message
from tests.security.corpus import HELPDESK_MESSAGES, SECRET_FORMS

REPO = Path(__file__).resolve().parents[2]
KEY = SessionKey("slack", "T1", "C1", "1.0", "U1")


def test_the_corpus_spans_forty_forms_in_several_languages() -> None:
    assert len(SECRET_FORMS) >= 40
    assert len({secret for _, secret in SECRET_FORMS}) == len(SECRET_FORMS)


@pytest.mark.parametrize(("text", "secret"), SECRET_FORMS, ids=[t[:40] for t, _ in SECRET_FORMS])
def test_every_secret_form_is_redacted(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted and REDACTED in redacted
    assert redact_text(redacted) == redacted


def test_every_secret_form_is_caught() -> None:
    missed = [text for text, secret in SECRET_FORMS if secret in redact_text(text)]
    assert missed == [], f"{len(SECRET_FORMS) - len(missed)} of {len(SECRET_FORMS)} forms caught"


def test_no_false_positive_in_helpdesk_messages() -> None:
    flagged = {text: [text[f.start : f.end] for f in find_secrets(text)] for text in HELPDESK_MESSAGES}
    assert {text: found for text, found in flagged.items() if found} == {}, f"of {len(HELPDESK_MESSAGES)} messages"


def test_no_false_positive_in_the_knowledge_base() -> None:
    articles = sorted(SAMPLE_KB.glob("*.md"))
    assert articles
    flagged = {a.name: [f.kind for f in find_secrets(a.read_text(encoding="utf-8"))] for a in articles}
    assert {name: kinds for name, kinds in flagged.items() if kinds} == {}


def _facts(text: str, history: list[str]) -> TurnFacts:
    messages = tuple(StoredMessage("user", h, 1_700_000_000.0 + i) for i, h in enumerate(history))
    context = SessionContext(messages=messages, summary="User said: " + " / ".join(history))
    return TurnFacts(KEY, "Ev1", "slack", "U1", context, text)


async def test_the_ticket_escalation_audit_and_export_hold_none_of_the_corpus(tmp_path: Path) -> None:
    history = [text for text, _ in SECRET_FORMS]
    secrets = [secret for _, secret in SECRET_FORMS]
    store: SessionStore = MemoryStore()
    posts: list[str] = []

    async def escalator(text: str) -> str:
        posts.append(text)
        return "posted"

    async with FakeTicketWebhook() as webhook:
        toolbox = Toolbox(
            store=store, knowledge=KnowledgeBase([]), tickets=TicketWebhook(webhook.url, retries=0), escalate=True
        )
        toolbox.register_escalator("slack", escalator, channel="C-ESC")
        facts = _facts("one more: my password is Tr0ub4dor&3", history[-5:])
        ticket_args = {"summary": history[0], "details": "\n".join(history), "priority": "high"}
        await toolbox.run({"name": "create_ticket", "args": ticket_args, "id": "c1", "type": "tool_call"}, facts)
        await toolbox.run(
            {"name": "escalate_to_human", "args": {"reason": history[1]}, "id": "c2", "type": "tool_call"}, facts
        )
        await toolbox.aclose()
        sent = json.dumps([r.json for r in webhook.posts] + [r.headers for r in webhook.posts], ensure_ascii=False)
    bot = make_bot(store, RecordingModel())
    for text in history:
        await bot.handle(message(text, thread="1.0"))
    await bot.aclose()
    record = await store.get(KEY)
    assert record is not None
    exported = json.dumps(
        session_document(record, audit=await store.audit(KEY), recall=await store.recall_items(KEY)),
        ensure_ascii=False,
    )
    audit = json.dumps([entry.to_json() for entry in await store.audit(KEY)], ensure_ascii=False)
    assert sent != "[]" and posts
    for surface, text in (("ticket", sent), ("hand-over", "\n".join(posts)), ("audit", audit), ("export", exported)):
        # Whole tokens only: a short PIN such as 0000 may be part of a timestamp, which is no leak.
        leaked = [secret for secret in secrets if re.search(rf"(?<![\w.]){re.escape(secret)}(?![\w])", text)]
        assert leaked == [], f"{surface} leaks {leaked}"
