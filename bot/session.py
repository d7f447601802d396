"""Session keys: which conversation a message belongs to, and how that is spelled in a store.

A session id is five components — platform, workspace, channel, thread, user — each percent-encoded
so that it only holds ``[A-Za-z0-9_.%]``, joined by ``:``; an absent component is ``-``. Because no
encoded component can contain ``:`` or be ``-``, two different tuples never share an id, and because
none can contain ``{`` or ``}``, the whole id is a valid Redis hash tag: every key of a session lands
in one cluster slot.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from urllib.parse import quote_from_bytes, unquote_to_bytes

from bot.constants import KEY_PREFIX, MAX_ID_CHARS
from bot.errors import InvalidMessage
from bot.messages import IncomingMessage

_ABSENT = "-"
REFERENCE_HEX_CHARS = 32  # 128 bits of a web session's hash: unique, and nothing to recover the id from


class Scope(enum.StrEnum):
    """Who shares a session. Direct messages are always per user, whatever the scope."""

    THREAD_USER = "thread_user"  # one session per user per thread (the default)
    THREAD = "thread"  # everyone in a thread shares one session
    CHANNEL_USER = "channel_user"  # one session per user per channel, threads ignored


def _encode(component: str | None) -> str:
    if component is None:
        return _ABSENT
    raw = component.encode("utf-8", "surrogatepass")
    # quote() leaves "-" and "~" alone; escape them too so "-" stays reserved for an absent component.
    return quote_from_bytes(raw, safe="_.").replace("-", "%2D").replace("~", "%7E")


def _decode(component: str) -> str | None:
    if component == _ABSENT:
        return None
    return unquote_to_bytes(component).decode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class SessionKey:
    """The identity of one conversation's memory.

    ``user`` is ``None`` when the scope shares the session between users (``thread`` scope).
    """

    platform: str
    workspace: str | None
    channel: str
    thread: str | None
    user: str | None

    @property
    def id(self) -> str:
        """The injective string form; also the session's Redis hash tag."""
        return ":".join(_encode(c) for c in (self.platform, self.workspace, self.channel, self.thread, self.user))

    def store_key(self, name: str) -> str:
        """The Redis key holding the session's ``name`` part, e.g. ``sb:{slack:T1:C1:-:U1}:msgs``."""
        return f"{KEY_PREFIX}:{{{self.id}}}:{name}"

    @classmethod
    def parse(cls, session_id: str) -> SessionKey:
        """Inverse of :attr:`id`.

        Raises:
            ValueError: the text is not a session id.
        """
        parts = session_id.split(":")
        if len(parts) != 5:
            raise ValueError(f"not a session id (expected 5 ':'-separated parts): {session_id!r}")
        try:
            platform, workspace, channel, thread, user = (_decode(p) for p in parts)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not a session id (bad escape): {session_id!r}") from exc
        if platform is None or channel is None:
            raise ValueError(f"not a session id (platform and channel are required): {session_id!r}")
        key = cls(platform=platform, workspace=workspace, channel=channel, thread=thread, user=user)
        if key.id != session_id:
            raise ValueError(f"not a session id (not in canonical form): {session_id!r}")
        return key

    def __str__(self) -> str:
        return self.id


def public_reference(key: SessionKey) -> str:
    """How a ticket, a hand-over or anything else read outside the bot names a session.

    A web session's id is a bearer capability: whoever knows it can read and write that browser tab's conversation.
    So a web session is named by a one-way hash of its id instead (the page's ids are random UUIDs, whose hash can
    be neither reversed nor guessed). Slack and Discord ids only point at conversations their members already see,
    and a person following up needs them, so they are kept.
    """
    if key.platform != "web":
        return key.id
    digest = hashlib.sha256(b"supportbot session reference\0" + key.id.encode()).hexdigest()
    return f"web:{digest[:REFERENCE_HEX_CHARS]}"


def user_index_key(platform: str, user: str) -> str:
    """The Redis key listing the sessions a platform user took part in (for erasure without a keyspace scan)."""
    return f"{KEY_PREFIX}:user:{{{_encode(platform)}:{_encode(user)}}}"


def session_key_for(msg: IncomingMessage, scope: Scope) -> SessionKey:
    """Map an incoming message to its session under ``scope``.

    Raises:
        InvalidMessage: an id is empty where one is required, or longer than ``MAX_ID_CHARS``.
    """
    ids: dict[str, str | None] = {
        "platform": msg.platform,
        "workspace": msg.workspace,
        "channel": msg.channel,
        "thread": msg.thread,
        "user": msg.user,
    }
    for name, value in ids.items():
        if not value and name in ("platform", "channel", "user"):
            raise InvalidMessage(f"{name} id is empty")
        if value is not None and len(value) > MAX_ID_CHARS:
            raise InvalidMessage(f"{name} id is longer than {MAX_ID_CHARS} characters")
    thread: str | None = msg.thread
    user: str | None = msg.user
    if not msg.is_direct:
        if scope is Scope.THREAD:
            user = None
        elif scope is Scope.CHANNEL_USER:
            thread = None
    return SessionKey(platform=msg.platform, workspace=msg.workspace, channel=msg.channel, thread=thread, user=user)
