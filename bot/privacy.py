"""A user's data across every session: export it, or erase it (GDPR). Uses the stores' per-user index, never a scan.

A session the user shared with others (``thread`` scope) is erased whole: its messages answer each other, and
a partial removal would leave replies quoting what was removed.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bot.export import session_document
from bot.memory import SessionStore
from bot.session import SessionKey


async def export_user(store: SessionStore, platform: str, user: str) -> list[dict[str, Any]]:
    """Every live session ``user`` of ``platform`` wrote in, as export documents."""
    documents = []
    for session_id in await store.sessions_of_user(platform, user):
        key = SessionKey.parse(session_id)
        record = await store.get(key)
        audit = await store.audit(key)
        if record is not None:
            documents.append(session_document(record, audit=audit, recall=await store.recall_items(key)))
        elif audit:
            # A tool ran, but the turn that called it was never saved: its audit entries are still the user's.
            documents.append({"session_id": session_id, "audit": [asdict(entry) for entry in audit]})
    return documents


async def erase_user(store: SessionStore, platform: str, user: str) -> int:
    """Delete every session ``user`` of ``platform`` wrote in, then the index itself. Returns how many existed."""
    erased = 0
    for session_id in await store.sessions_of_user(platform, user):
        erased += await store.delete(SessionKey.parse(session_id))
    await store.forget_user(platform, user)
    return erased
