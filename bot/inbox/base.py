"""The boundary every inbox implements, and the values it hands to workers.

An inbox is where a platform's message is recorded *before* the platform is acknowledged, and where it stays
until its turn has been answered. Workers take entries, answer them, and mark them done; an entry whose worker
died is taken again by a live one after the visibility timeout (or at once by the same worker restarted).

Order: a session's entries are handed out one at a time, oldest first. An entry is handed out only while it is
the oldest unanswered entry of its session (its *head*), so a follow-up never overtakes an earlier message, not
even when the earlier one is being recovered from a dead worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.messages import IncomingMessage

Route = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One recorded message, handed to a worker to answer.

    Attributes:
        entry_id: the inbox's own id of the entry (a stream id, a row id).
        message: the message as the adapter recorded it.
        route: where and how the adapter answers it (its own JSON-able reply address).
        session_id: the session the message belongs to (orders the session's entries); ``""`` when its ids form no
            session key (answered with a notice, in no particular order).
        enqueued: when the entry was recorded (epoch seconds).
        attempts: how many times the entry has been handed to a worker, this time included.
        reply_ref: where an earlier attempt started posting the reply (see :meth:`Inbox.note_reply`), if anywhere.
    """

    entry_id: str
    message: IncomingMessage
    route: Route
    session_id: str
    enqueued: float
    attempts: int = 1
    reply_ref: str | None = None

    @property
    def redelivered(self) -> bool:
        """Whether an earlier attempt took this entry and did not finish it."""
        return self.attempts > 1


@dataclass(frozen=True, slots=True)
class InboxStats:
    """What ``/metrics`` and ``supportbot inbox`` show."""

    depth: int = 0  # entries recorded and not yet done
    oldest_age: float = 0.0  # seconds since the oldest of them was recorded (0 when empty)
    in_flight: int = 0  # entries a worker holds right now


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry as the administration command lists it."""

    entry_id: str
    platform: str
    session_id: str
    event_id: str
    enqueued: float
    owner: str | None  # the worker holding it, ``None`` when nobody does
    attempts: int


@dataclass(slots=True)
class InboxCounters:
    """Counts an inbox keeps for the metrics, since the process started."""

    recorded: int = 0
    already_recorded: int = 0  # a platform's redelivery of a message that was recorded before
    redeliveries: int = 0  # entries handed out again after an attempt that did not finish
    claimed_from_dead: int = 0  # entries taken over from a worker that stopped heart-beating
    abandoned: int = 0  # entries given up after too many attempts


class Inbox(Protocol):
    """A durable queue of accepted messages, with per-session order and crash recovery."""

    consumer: str
    counters: InboxCounters

    async def put(self, message: IncomingMessage, *, route: Route, session_id: str) -> bool:
        """Record ``message`` durably; return only once it is recorded.

        Returns:
            True when recorded now; False when the same message (its ``event_id`` in its session) was recorded
            before, so a platform's retry never makes a second entry.

        Raises:
            StoreUnavailable: nothing was recorded; the platform must not be acknowledged.
        """
        ...

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        """Up to ``limit`` entries to answer now, waiting up to ``wait`` seconds for one to arrive.

        Entries come from new messages, from this consumer's own unfinished entries (a restart under the same
        name), and from workers that stopped heart-beating for longer than the visibility timeout. Only session
        heads are returned, and never an entry this consumer already holds.

        Raises:
            StoreUnavailable: the inbox cannot be read.
        """
        ...

    async def extend(self, deliveries: Sequence[Delivery]) -> set[str]:
        """Tell the inbox these entries are still being worked on (the heartbeat).

        Returns:
            The entry ids this consumer still holds; an entry missing from it was taken over by another worker.
        """
        ...

    async def done(self, delivery: Delivery) -> None:
        """Remove the entry: its turn was answered (or found already answered). Idempotent."""
        ...

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give entries back unanswered, so another worker takes them at once. Only at shutdown: from then on this
        inbox takes over nothing more."""
        ...

    async def postpone(self, delivery: Delivery) -> None:
        """An attempt failed: the entry is taken again (by any worker) once the visibility timeout has passed."""
        ...

    async def abandon(self, delivery: Delivery, *, reason: str) -> None:
        """Give up on an entry that failed too often: keep it aside for an operator and remove it."""
        ...

    async def note_reply(self, delivery: Delivery, ref: str) -> None:
        """Remember where the reply to ``delivery`` started to be posted, for a later attempt to finish it there."""
        ...

    async def stats(self) -> InboxStats:
        """Depth and age of the oldest entry."""
        ...

    async def pending(self, *, limit: int = 100) -> list[PendingEntry]:
        """Entries not yet done, oldest first."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the inbox can be written."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...


def dedupe_key(session_id: str, event_id: str) -> str:
    """What makes two recordings the same message: its identity within its session."""
    return f"{session_id}\n{event_id}"


def encode_entry(message: IncomingMessage, *, route: Route, session_id: str) -> str:
    """The JSON an inbox keeps for one message."""
    return json.dumps(
        {
            "platform": message.platform,
            "workspace": message.workspace,
            "channel": message.channel,
            "thread": message.thread,
            "user": message.user,
            "text": message.text,
            "event_id": message.event_id,
            "is_direct": message.is_direct,
            "timestamp": message.timestamp,
            "route": dict(route),
            "session_id": session_id,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_entry(raw: str) -> tuple[IncomingMessage, Route, str]:
    """Inverse of :func:`encode_entry`.

    Raises:
        ValueError: the text is not an entry (a corrupt or foreign value).
    """
    try:
        data = json.loads(raw)
        message = IncomingMessage(
            platform=str(data["platform"]),
            workspace=data["workspace"],
            channel=str(data["channel"]),
            thread=data["thread"],
            user=str(data["user"]),
            text=str(data["text"]),
            event_id=str(data["event_id"]),
            is_direct=bool(data["is_direct"]),
            timestamp=float(data["timestamp"]),
        )
        route = data["route"]
        if not isinstance(route, dict):
            raise ValueError("route is not an object")
        return message, route, str(data["session_id"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an inbox entry: {type(exc).__name__}") from exc
