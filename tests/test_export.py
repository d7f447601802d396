"""The session export and recap every surface shows."""

from __future__ import annotations

import json

from bot.export import recap, session_document, session_json
from bot.memory import SessionMeta, SessionRecord
from bot.messages import StoredMessage

MESSAGES = tuple(StoredMessage(role, f"{role} {i}", float(i)) for i in range(7) for role in ("user", "assistant"))
META = SessionMeta(0.0, 1.0, "slack", 7)


def test_recap_without_summary_counts_turns_and_quotes_latest_questions() -> None:
    lines = recap(SessionRecord("s", META, ("U1",), MESSAGES, None)).splitlines()
    assert lines[0] == "This conversation has 7 turns. Your latest messages:"
    assert lines[1:] == [f"- user {i}" for i in range(2, 7)]


def test_recap_prefers_the_summary_and_handles_empty_sessions() -> None:
    assert recap(SessionRecord("s", META, (), MESSAGES, "VPN fixed")) == "Summary of this conversation:\nVPN fixed"
    assert "empty" in recap(None) and "empty" in recap(SessionRecord("s", META, (), (), None))


def test_the_export_holds_everything_as_json() -> None:
    record = SessionRecord("slack:T1:C1:-:U1", META, ("U1",), MESSAGES[:2], "sum")
    document = json.loads(session_json(record))
    assert document == session_document(record)
    assert document["meta"]["turns"] == 7 and document["users"] == ["U1"] and document["summary"] == "sum"
    assert document["messages"][0] == {"role": "user", "content": "user 0", "ts": 0.0, "user": None, "event_id": None}
