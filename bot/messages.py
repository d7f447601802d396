"""The values that travel through the core: what arrives, what is stored, what goes back."""

from __future__ import annotations

import enum
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]

_SURROGATES = re.compile("[\ud800-\udfff]")
# C0 controls except tab, newline and carriage return, plus DEL: they carry no meaning in a chat and confuse terminals.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Make text safe to store and to send: lone surrogates become U+FFFD, control characters go."""
    return _CONTROLS.sub("", _SURROGATES.sub("\ufffd", text))


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One user message as an adapter hands it to the core.

    Attributes:
        platform: ``"slack"``, ``"discord"``, ``"web"`` or ``"cli"``.
        workspace: Slack enterprise or team id, Discord guild id; ``None`` where the platform has none.
        channel: the channel, DM or conversation id.
        thread: the thread root (Slack thread ts, Discord thread id); ``None`` outside threads.
        user: the author's platform id.
        text: what the user wrote, mention already stripped.
        event_id: the platform's identity of this message, used to answer it once.
        is_direct: a direct message; DMs are always scoped to their user.
        timestamp: when the platform says the message was sent (epoch seconds).
        requester: who sent it, when the adapter knows better than ``user``: a web client's token or network
            address (a web ``user`` is the tab's session id, which the client picks freely).
    """

    platform: str
    workspace: str | None
    channel: str
    thread: str | None
    user: str
    text: str
    event_id: str
    is_direct: bool = False
    timestamp: float = field(default_factory=time.time)
    requester: str | None = None

    @property
    def sender(self) -> str:
        """Who rate limits and quotas count this message against: ``requester``, else the platform's user."""
        return self.requester or f"{self.platform}:{self.workspace or '-'}:{self.user}"


class ReplyKind(enum.Enum):
    """Why the core answered the way it did."""

    ANSWER = "answer"  # the model's reply
    FALLBACK = "fallback"  # the model failed; a short polite reply instead
    NOTICE = "notice"  # no turn ran (empty message, memory unavailable); the text says why
    STATELESS = "stateless"  # memory was unavailable; the model answered without it and nothing was stored


@dataclass(frozen=True, slots=True)
class Reply:
    """What the core sends back for one message; the adapter posts ``text`` into the same thread."""

    text: str
    session_id: str
    event_id: str
    kind: ReplyKind = ReplyKind.ANSWER


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a session's history as the stores keep it."""

    role: Role
    content: str
    ts: float
    user: str | None = None
    event_id: str | None = None

    def to_json(self) -> str:
        """Compact JSON; ``ensure_ascii`` keeps any leftover odd code point representable in every backend."""
        return json.dumps(
            {"role": self.role, "content": self.content, "ts": self.ts, "user": self.user, "event_id": self.event_id},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> StoredMessage:
        """Inverse of :meth:`to_json`."""
        data: dict[str, Any] = json.loads(raw)
        role = data["role"]
        if role not in ("user", "assistant"):
            raise ValueError(f"unknown role {role!r}")
        return cls(
            role=role,
            content=str(data["content"]),
            ts=float(data["ts"]),
            user=data.get("user"),
            event_id=data.get("event_id"),
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """A user message and the reply to it, saved together."""

    user: StoredMessage
    reply: StoredMessage | None

    @property
    def messages(self) -> tuple[StoredMessage, ...]:
        """The messages to append, in order."""
        return (self.user,) if self.reply is None else (self.user, self.reply)
