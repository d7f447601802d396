"""``memory://``: an in-process store with the same semantics as the durable ones. For tests and throwaway runs."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from bot.errors import LeaseLost
from bot.memory.base import (
    AuditEntry,
    ClaimStatus,
    Entities,
    Entity,
    Lease,
    RecallItem,
    SessionContext,
    SessionMeta,
    SessionRecord,
    StoreLimits,
    SummaryWork,
    TurnEmbedding,
    TurnStart,
)
from bot.messages import StoredMessage
from bot.session import SessionKey


@dataclass(slots=True)
class _Session:
    key: SessionKey
    messages: list[StoredMessage] = field(default_factory=list)
    summary: str | None = None
    meta: SessionMeta | None = None
    users: set[str] = field(default_factory=set)
    seen: dict[str, float] = field(default_factory=dict)  # answered event id -> when
    lease: tuple[int, str, float] | None = None  # token, event id, expires at
    total: int = 0
    summary_upto: int = 0
    entities: dict[str, Entity] = field(default_factory=dict)
    recall: dict[int, RecallItem] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)

    def lease_holder(self, now: float) -> tuple[int, str, float] | None:
        if self.lease is not None and self.lease[2] <= now:
            self.lease = None
        return self.lease


class MemoryStore:
    """Sessions in a dict. Nothing survives the process."""

    def __init__(self, *, limits: StoreLimits | None = None) -> None:
        self.limits = limits or StoreLimits()
        self._sessions: dict[str, _Session] = {}
        # Store-wide, so a token is never handed out twice even after a session is dropped and recreated.
        self._fence = itertools.count(1)
        self._last_token = 0
        # Deleted sessions: id -> (the last token handed out then, the delivery then being answered, expiry).
        self._erased: dict[str, tuple[int, str | None, float]] = {}

    def _tombstone(self, key: SessionKey, now: float) -> tuple[int, str | None, float] | None:
        tombstone = self._erased.get(key.id)
        if tombstone is not None and tombstone[2] <= now:
            del self._erased[key.id]
            return None
        return tombstone

    def _fenced(self, key: SessionKey, fence: int, now: float) -> bool:
        """Whether a write made under the lease token ``fence`` comes from before the session's deletion."""
        tombstone = self._tombstone(key, now)
        return tombstone is not None and fence <= tombstone[0]

    def _live(self, key: SessionKey, now: float) -> _Session | None:
        session = self._sessions.get(key.id)
        if session is not None and self._expired(session, now):
            del self._sessions[key.id]
            return None
        return session

    def _expired(self, session: _Session, now: float) -> bool:
        if session.meta is None:
            # Never committed: it exists while a lease is held on it, or while a tool call it logged is fresh.
            if session.audit and session.audit[-1].time + self.limits.idle_ttl > now:
                return False
            return session.lease_holder(now) is None and not session.messages
        return session.meta.last_active + self.limits.idle_ttl <= now

    async def begin_turn(
        self,
        key: SessionKey,
        *,
        event_id: str,
        window: int,
        recall_after: int | None = None,
        fence: int | None = None,
    ) -> TurnStart:
        now = time.time()
        tombstone = self._tombstone(key, now)
        if fence is not None and self._fenced(key, fence, now):
            return TurnStart(ClaimStatus.ERASED)
        if tombstone is not None and tombstone[1] == event_id:
            return TurnStart(ClaimStatus.DUPLICATE)
        session = self._live(key, now) or self._sessions.setdefault(key.id, _Session(key=key))
        if event_id in session.seen:
            return TurnStart(ClaimStatus.DUPLICATE)
        holder = session.lease_holder(now)
        if holder is not None:
            if holder[1] == event_id:
                return TurnStart(ClaimStatus.IN_PROGRESS)
            return TurnStart(ClaimStatus.BUSY, retry_after=holder[2] - now)
        token = self._last_token = next(self._fence)
        session.lease = (token, event_id, now + self.limits.lease_ttl)
        recent = tuple(session.messages[-window:]) if window > 0 else ()
        first_in_window = session.total - len(recent) + 1
        after = first_in_window if recall_after is None else recall_after
        context = SessionContext(
            recall=tuple(session.recall[s] for s in sorted(session.recall) if after < s < first_in_window),
            messages=recent,
            summary=session.summary,
            meta=session.meta,
            total=session.total,
            summary_upto=session.summary_upto,
            entities=dict(session.entities),
            fence=token,
        )
        return TurnStart(ClaimStatus.ACQUIRED, Lease(key, token, event_id), context)

    async def commit_turn(
        self,
        lease: Lease,
        messages: tuple[StoredMessage, ...],
        *,
        platform: str,
        embedding: TurnEmbedding | None = None,
    ) -> None:
        now = time.time()
        session = self._sessions.get(lease.key.id)
        holder = session.lease_holder(now) if session is not None else None
        if session is None or holder is None or holder[:2] != (lease.token, lease.event_id):
            raise LeaseLost(f"lease {lease.token} on session {lease.key.id} is no longer held")
        session.messages.extend(messages)
        if embedding is not None:
            seq = session.total + 1
            session.recall[seq] = RecallItem(seq, embedding.text, embedding.vector, embedding.model)
            for old in sorted(session.recall)[: -self.limits.max_recall]:
                del session.recall[old]
        session.total += len(messages)
        del session.messages[: -self.limits.keep(session.total, session.summary_upto)]
        created = session.meta.created if session.meta else now
        turns = session.meta.turns + 1 if session.meta else 1
        session.meta = SessionMeta(created=created, last_active=now, platform=platform, turns=turns)
        session.users.update(m.user for m in messages if m.role == "user" and m.user)
        session.seen[lease.event_id] = now
        horizon = now - self.limits.dedupe_ttl
        session.seen = {e: t for e, t in session.seen.items() if t > horizon}
        session.lease = None

    async def renew_lease(self, lease: Lease) -> bool:
        now = time.time()
        session = self._sessions.get(lease.key.id)
        held = session.lease_holder(now) if session is not None else None
        if session is None or held is None or held[:2] != (lease.token, lease.event_id):
            return False
        session.lease = (lease.token, lease.event_id, now + self.limits.lease_ttl)
        return True

    async def abort_turn(self, lease: Lease) -> None:
        session = self._sessions.get(lease.key.id)
        if session is None or session.lease is None or session.lease[:2] != (lease.token, lease.event_id):
            return
        session.lease = None
        if session.meta is None and not session.audit:
            del self._sessions[lease.key.id]

    async def unsummarized(self, key: SessionKey, *, upto: int) -> SummaryWork:
        session = self._live(key, time.time())
        if session is None:
            return SummaryWork(None, 0, ())
        first = session.total - len(session.messages) + 1  # sequence number of the oldest kept message
        start = max(session.summary_upto + 1, first) - first
        stop = min(upto, session.total) - first + 1
        return SummaryWork(session.summary, session.summary_upto, tuple(session.messages[start : max(start, stop)]))

    async def save_summary(self, key: SessionKey, *, summary: str, after: int, upto: int, fence: int = 0) -> bool:
        now = time.time()
        session = self._live(key, now)
        if session is None or session.meta is None or session.summary_upto != after or self._fenced(key, fence, now):
            return False
        session.summary, session.summary_upto = summary, upto
        return True

    async def save_entities(self, key: SessionKey, entities: Entities, *, fence: int = 0) -> None:
        now = time.time()
        session = self._live(key, now)
        if session is None or session.meta is None or self._fenced(key, fence, now):
            return
        for name, entity in entities.items():
            known = session.entities.get(name)
            if known is None or known.updated <= entity.updated:
                session.entities[name] = entity

    async def recall_items(self, key: SessionKey) -> list[RecallItem]:
        session = self._live(key, time.time())
        if session is None:
            return []
        return [session.recall[seq] for seq in sorted(session.recall)]

    async def append_audit(
        self, key: SessionKey, entry: AuditEntry, *, platform: str, user: str, fence: int = 0
    ) -> None:
        now = time.time()
        if self._fenced(key, fence, now):
            return
        session = self._live(key, now) or self._sessions.setdefault(key.id, _Session(key=key))
        session.audit.append(entry)
        del session.audit[: -self.limits.max_audit]
        if user:
            session.users.add(user)

    async def audit(self, key: SessionKey) -> list[AuditEntry]:
        session = self._live(key, time.time())
        return [] if session is None else list(session.audit)

    async def get(self, key: SessionKey) -> SessionRecord | None:
        session = self._live(key, time.time())
        if session is None or session.meta is None:
            return None
        return SessionRecord(
            session_id=key.id,
            meta=session.meta,
            users=tuple(sorted(session.users)),
            messages=tuple(session.messages),
            summary=session.summary,
            entities=dict(session.entities),
        )

    async def list_sessions(self) -> list[SessionRecord]:
        await self.sweep()
        records = [
            SessionRecord(s.key.id, s.meta, tuple(sorted(s.users)), (), None)
            for s in self._sessions.values()
            if s.meta is not None
        ]
        return sorted(records, key=lambda r: r.meta.last_active, reverse=True)

    async def sessions_of_user(self, platform: str, user: str) -> list[str]:
        return sorted(
            sid
            for sid, s in self._sessions.items()
            if (s.meta is not None or s.audit) and s.key.platform == platform and user in s.users
        )

    async def forget_user(self, platform: str, user: str) -> None:
        return None  # the sessions themselves are the index here

    async def delete(self, key: SessionKey) -> bool:
        now = time.time()
        session = self._sessions.pop(key.id, None)
        earlier = self._tombstone(key, now)
        answering = session.lease[1] if session is not None and session.lease is not None else None
        if answering is None and earlier is not None:
            answering = earlier[1]
        self._erased[key.id] = (self._last_token, answering, now + self.limits.dedupe_ttl)
        return session is not None and (session.meta is not None or bool(session.audit))

    async def sweep(self) -> int:
        now = time.time()
        expired = [sid for sid, s in self._sessions.items() if self._expired(s, now)]
        for sid in expired:
            del self._sessions[sid]
        self._erased = {sid: t for sid, t in self._erased.items() if t[2] > now}
        return len(expired)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
