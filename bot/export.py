"""A session as plain data, for ``sessions export`` and the adapters' export commands.

An export leaves the process (a file, a Slack or Discord message), so every text in it is redacted: a password
typed in the chat stays in the store, not in the export.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bot.entities import describe
from bot.memory import AuditEntry, RecallItem, SessionRecord
from bot.redact import redact_data, redact_text

RECAP_MESSAGES = 5  # user messages listed by a recap


def session_document(
    record: SessionRecord, *, audit: Sequence[AuditEntry] = (), recall: Sequence[RecallItem] = ()
) -> dict[str, Any]:
    """Everything the store holds for a session, JSON-ready.

    Recalled turns are listed with their text and embedding model; the vectors themselves are derived from that
    text and left out.
    """
    return {
        "session_id": record.session_id,
        "meta": asdict(record.meta),
        "users": list(record.users),
        "summary": None if record.summary is None else redact_text(record.summary),
        "entities": {
            name: {**asdict(entity), "value": redact_text(entity.value)}
            for name, entity in sorted(record.entities.items())
        },
        "messages": [{**asdict(m), "content": redact_text(m.content)} for m in record.messages],
        "recall": [{"seq": item.seq, "model": item.model, "text": redact_text(item.text)} for item in recall],
        "audit": [redact_data(asdict(entry)) for entry in audit],
    }


def session_json(record: SessionRecord) -> str:
    """:func:`session_document` as indented JSON."""
    return json.dumps(session_document(record), ensure_ascii=False, indent=2)


def recap(record: SessionRecord | None) -> str:
    """What a user sees for "summary": the stored summary, or the turn count and their latest questions."""
    if record is None or not record.messages:
        return "This conversation is empty: nothing is remembered yet."
    facts = "".join(f"\n- {line}" for line in describe(record.entities))
    known = f"\n\nWhat I know about your setup:{facts}" if facts else ""
    if record.summary:
        return f"Summary of this conversation:\n{record.summary}{known}"
    asked = [m.content for m in record.messages if m.role == "user"][-RECAP_MESSAGES:]
    lines = "\n".join(f"- {' '.join(text.split())[:200]}" for text in asked)
    turns = record.meta.turns
    return f"This conversation has {turns} turn{'' if turns == 1 else 's'}. Your latest messages:\n{lines}{known}"
