"""The boundary every session store implements, and the values it returns."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.constants import DEDUPE_TTL_S, IDLE_TTL_S, LEASE_TTL_S, MAX_MESSAGES
from bot.messages import StoredMessage
from bot.session import SessionKey


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Retention policy shared by every backend.

    Attributes:
        idle_ttl: seconds without a turn after which a session and all its keys disappear.
        max_messages: messages kept per session; older ones are trimmed on save.
        dedupe_ttl: seconds an answered delivery id is remembered for idempotency, and a deleted session stays
            fenced against the writes of turns that were running when it was deleted.
        lease_ttl: seconds a turn holds its session unless renewed; a crashed holder blocks it this long at most.
        max_recall: embedded turns kept per session for vector recall; the oldest go first.
        max_audit: tool calls kept per session in its audit log; the oldest go first.
        max_unsummarized: with a rolling summary, messages not yet folded into it are kept beyond
            ``max_messages`` up to this many, so none is trimmed before it is summarised; 0 turns that off.
    """

    idle_ttl: float = IDLE_TTL_S
    max_messages: int = MAX_MESSAGES
    dedupe_ttl: float = DEDUPE_TTL_S
    lease_ttl: float = LEASE_TTL_S
    max_unsummarized: int = 0
    max_recall: int = 1_000
    max_audit: int = 1_000

    def keep(self, total: int, summary_upto: int) -> int:
        """How many of the newest messages a session keeps after a save."""
        if self.max_unsummarized <= 0:
            return self.max_messages
        return min(max(self.max_messages, total - summary_upto), self.max_unsummarized)


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """What a store knows about a session besides its messages."""

    created: float
    last_active: float
    platform: str
    turns: int


@dataclass(frozen=True, slots=True)
class Entity:
    """A fact about the user's environment (``os`` → ``Windows 11``), and when it was last stated."""

    value: str
    updated: float

    def to_json(self) -> str:
        """Compact JSON for the stores."""
        return json.dumps({"value": self.value, "updated": self.updated}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Entity:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(value=str(data["value"]), updated=float(data["updated"]))


Entities = Mapping[str, Entity]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One tool call of one turn: what was called, with which (redacted) arguments, and how it went."""

    time: float
    session_id: str
    event_id: str
    tool: str
    arguments: Mapping[str, Any]  # secrets already redacted
    outcome: str  # ok | error | not_configured | repeated
    detail: str  # the result shown to the model, or the error, shortened
    latency_ms: float

    def to_json(self) -> str:
        """Compact JSON for the stores."""
        return json.dumps(
            {
                "time": self.time,
                "session_id": self.session_id,
                "event_id": self.event_id,
                "tool": self.tool,
                "arguments": dict(self.arguments),
                "outcome": self.outcome,
                "detail": self.detail,
                "latency_ms": self.latency_ms,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditEntry:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(
            time=float(data["time"]),
            session_id=str(data["session_id"]),
            event_id=str(data["event_id"]),
            tool=str(data["tool"]),
            arguments=dict(data["arguments"]),
            outcome=str(data["outcome"]),
            detail=str(data["detail"]),
            latency_ms=float(data["latency_ms"]),
        )


@dataclass(frozen=True, slots=True)
class RecallItem:
    """A stored turn and its embedding, kept in the session's own keys for vector recall.

    Attributes:
        seq: sequence number of the turn's user message, so recall can skip turns still in the window.
        text: the turn as a prompt shows it (the user's message and the answer).
        vector: the embedding, float32, L2-normalised.
        model: which embedding model made ``vector``; vectors of another model are not compared.
    """

    seq: int
    text: str
    vector: bytes
    model: str


@dataclass(frozen=True, slots=True)
class TurnEmbedding:
    """A turn's embedding, saved by :meth:`SessionStore.commit_turn` with the turn (its ``seq`` is the store's)."""

    text: str
    vector: bytes
    model: str


@dataclass(frozen=True, slots=True)
class SessionContext:
    """The slice of a session a turn needs: the recent window (oldest first), the summary and the metadata."""

    messages: tuple[StoredMessage, ...] = ()
    summary: str | None = None
    meta: SessionMeta | None = None
    total: int = 0  # messages ever saved in the session: the sequence number of the newest
    summary_upto: int = 0  # the summary covers messages 1..summary_upto
    entities: Entities = field(default_factory=dict)
    recall: tuple[RecallItem, ...] = ()  # embedded turns that left the window since ``recall_after`` (if asked)
    # The fencing token of the turn's lease: what the turn's tools and upkeep write carries it, so that a deletion
    # of the session while they run fences those writes out.
    fence: int = 0


@dataclass(frozen=True, slots=True)
class SummaryWork:
    """What a summary fold needs: the current summary, the cut point it covers, and the messages after it."""

    summary: str | None
    summary_upto: int
    messages: tuple[StoredMessage, ...]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """Everything a store holds for one session, for export and administration."""

    session_id: str
    meta: SessionMeta
    users: tuple[str, ...]
    messages: tuple[StoredMessage, ...]
    summary: str | None
    entities: Entities = field(default_factory=dict)


class ClaimStatus(enum.Enum):
    """The outcome of trying to start a turn."""

    ACQUIRED = "acquired"  # this caller holds the lease; the context is loaded
    DUPLICATE = "duplicate"  # this delivery was already answered
    IN_PROGRESS = "in_progress"  # this delivery is being answered right now by another attempt
    BUSY = "busy"  # another delivery holds the session's lease; retry later
    ERASED = "erased"  # the session was deleted since the turn's earlier lease: the turn must not be saved


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that a turn holds its session; ``token`` is the fencing token checked on save."""

    key: SessionKey
    token: int
    event_id: str


@dataclass(frozen=True, slots=True)
class TurnStart:
    """Result of :meth:`SessionStore.begin_turn`. ``lease`` and ``context`` are set only when acquired."""

    status: ClaimStatus
    lease: Lease | None = None
    context: SessionContext | None = None
    retry_after: float = 0.0  # BUSY only: seconds until the holder's lease expires, as the store sees it


class SessionStore(Protocol):
    """Per-session memory. One instance is shared by every turn of a process.

    A turn costs two calls: :meth:`begin_turn` before the model and :meth:`commit_turn` (or
    :meth:`abort_turn`) after it. On Redis each is one round trip, whatever the history's length.
    """

    limits: StoreLimits

    async def begin_turn(
        self,
        key: SessionKey,
        *,
        event_id: str,
        window: int,
        recall_after: int | None = None,
        fence: int | None = None,
    ) -> TurnStart:
        """Claim the delivery, take the session's lease and read the last ``window`` messages, atomically.

        With ``recall_after``, also the embedded turns older than the window with a sequence number above it
        (candidates for vector recall, which a caller caches: 0 reads them all), in the same round trip.

        ``fence`` is for a turn taking its session again after losing its lease: the token of that lease. If the
        session was deleted since it was handed out, the status is ``ERASED`` and nothing is taken. A delivery
        that was being answered when its session was deleted is ``DUPLICATE`` from then on.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def commit_turn(
        self,
        lease: Lease,
        messages: tuple[StoredMessage, ...],
        *,
        platform: str,
        embedding: TurnEmbedding | None = None,
    ) -> None:
        """Append ``messages``, trim, refresh every TTL, mark the delivery answered and release the lease, atomically.

        ``embedding`` is the turn's, kept for vector recall under the sequence number of the turn's first message;
        the oldest go beyond ``limits.max_recall``.

        Raises:
            LeaseLost: the lease expired and was fenced out; nothing was written.
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def renew_lease(self, lease: Lease) -> bool:
        """Extend the lease by ``limits.lease_ttl`` from now, if it is still held (the turn's heartbeat).

        Returns:
            False when the lease expired or another turn holds the session now.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def abort_turn(self, lease: Lease) -> None:
        """Release the lease without writing, so a redelivery of the same event is processed.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def unsummarized(self, key: SessionKey, *, upto: int) -> SummaryWork:
        """The summary and the messages after its cut point up to sequence number ``upto``, in one read."""
        ...

    async def save_summary(self, key: SessionKey, *, summary: str, after: int, upto: int, fence: int = 0) -> bool:
        """Replace the summary and move its cut point from ``after`` to ``upto``, atomically.

        Returns False (and writes nothing) when the cut point is no longer ``after`` — another fold won — or
        the session is gone, which makes a fold safe to run twice. ``fence`` is the token of the lease of the
        turn that read what was summarised (``SessionContext.fence``): if the session was deleted since, the
        summary is not saved, whatever conversation the session holds now.
        """
        ...

    async def save_entities(self, key: SessionKey, entities: Entities, *, fence: int = 0) -> None:
        """Merge ``entities`` into the session's (a key already there is replaced only by a newer fact).

        Nothing is saved if the session was deleted since the lease with token ``fence`` was handed out.
        """
        ...

    async def recall_items(self, key: SessionKey) -> list[RecallItem]:
        """Every embedded turn of the session, oldest first."""
        ...

    async def append_audit(
        self, key: SessionKey, entry: AuditEntry, *, platform: str, user: str, fence: int = 0
    ) -> None:
        """Record a tool call in the session's audit log, which expires and is erased with the session.

        Also indexes the session under ``user``, in the same write: a tool may run before the turn's first
        commit, and an erasure must still find what it logged. Nothing is recorded if the session was deleted
        since the calling turn's lease (token ``fence``) was handed out.
        """
        ...

    async def audit(self, key: SessionKey) -> list[AuditEntry]:
        """The session's audit log, oldest first."""
        ...

    async def get(self, key: SessionKey) -> SessionRecord | None:
        """The whole session, or ``None`` when it does not exist (or has expired)."""
        ...

    async def list_sessions(self) -> list[SessionRecord]:
        """Every live session, most recently active first (messages and summary left empty)."""
        ...

    async def sessions_of_user(self, platform: str, user: str) -> list[str]:
        """Ids of the sessions ``user`` of ``platform`` wrote in, from an index kept with the turns (no scan).

        May name sessions that have since expired or been deleted.
        """
        ...

    async def forget_user(self, platform: str, user: str) -> None:
        """Drop the user's session index (after their sessions were erased)."""
        ...

    async def delete(self, key: SessionKey) -> bool:
        """Remove every key the session owns and fence out every turn that holds or held its lease. Returns
        whether it existed.

        What is left is a tombstone holding no text: the last fencing token handed out and the delivery then
        being answered, for ``limits.dedupe_ttl``. A write carrying an older token (``fence``) is refused,
        including a turn's attempt to take the session again; a new message starts a new, empty conversation.
        """
        ...

    async def sweep(self) -> int:
        """Remove expired sessions; returns how many. Redis expires keys itself and returns 0."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...
