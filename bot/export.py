"""A session as plain data, for ``sessions export`` and the adapters' export commands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bot.entities import describe
from bot.memory import AuditEntry, RecallItem, SessionRecord

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
        "summary": record.summary,
        "entities": {name: asdict(entity) for name, entity in sorted(record.entities.items())},
        "messages": [asdict(m) for m in record.messages],
        "recall": [{"seq": item.seq, "model": item.model, "text": item.text} for item in recall],
        "audit": [asdict(entry) for entry in audit],
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
