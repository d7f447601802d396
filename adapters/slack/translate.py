"""Pure translation between Slack payloads and Supportbot's values: no I/O here."""

from __future__ import annotations

import re
from typing import Any

from adapters.inert import defang
from bot.messages import IncomingMessage

PLATFORM = "slack"

# Slack's hard cap on a message's text is 40,000 characters, but it recommends staying under 4,000 so messages
# render and stream reliably; longer replies are split into several messages in the thread.
MESSAGE_CHARS = 3_900

# Message subtypes that carry new user text; everything else (edits, deletions, joins, bot posts…) is ignored.
USER_TEXT_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})

COMMANDS = ("reset", "summary", "export", "help")

_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)
_UNDERSCORE_BOLD = re.compile(r"__(.+?)__", re.DOTALL)
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![*\w])")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
_STRIKE = re.compile(r"~~(.+?)~~", re.DOTALL)
_FENCE = re.compile(r"(```.*?```)", re.DOTALL)
_BOLD_MARK = "\x00B\x00"  # keeps converted bold away from the italic rule


def workspace_of(body: dict[str, Any]) -> str | None:
    """The workspace a payload belongs to: the Enterprise Grid org when present, else the team."""
    for key in ("enterprise_id", "team_id"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    authorizations = body.get("authorizations") or []
    if authorizations and isinstance(authorizations[0], dict):
        auth = authorizations[0]
        return auth.get("enterprise_id") or auth.get("team_id")
    return None


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The text without the bot's ``<@U…>`` mention (and its optional ``|name`` label)."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", text)
    return text.strip()


def is_user_text(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Whether an event is a person's new message (not a bot, not the bot itself, not an edit or a join)."""
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    if event.get("subtype") not in USER_TEXT_SUBTYPES:
        return False
    user = event.get("user")
    return isinstance(user, str) and bool(user) and user != bot_user_id and isinstance(event.get("text"), str)


def thread_of(event: dict[str, Any], *, starts_thread: bool) -> str | None:
    """The thread root a message belongs to; a top-level message that ``starts_thread`` becomes its own root."""
    thread_ts = event.get("thread_ts")
    if isinstance(thread_ts, str) and thread_ts:
        return thread_ts
    return str(event["ts"]) if starts_thread else None


def to_incoming(
    event: dict[str, Any], body: dict[str, Any], *, bot_user_id: str | None, starts_thread: bool
) -> IncomingMessage:
    """An ``app_mention`` or ``message`` event as the core's message.

    The event id is the message's identity (channel + ts), not the delivery's, because one message arrives as
    several events (``app_mention`` and ``message``) and Slack retries each of them.
    """
    channel = str(event["channel"])
    ts = str(event["ts"])
    direct = event.get("channel_type") == "im"
    return IncomingMessage(
        platform=PLATFORM,
        workspace=workspace_of(body) or event.get("team"),
        channel=channel,
        thread=thread_of(event, starts_thread=starts_thread and not direct),
        user=str(event["user"]),
        text=strip_mention(str(event.get("text", "")), bot_user_id),
        event_id=f"{channel}:{ts}",
        is_direct=direct,
        timestamp=float(ts),
    )


def command_of(text: str) -> str | None:
    """``reset``, ``summary``, ``export`` or ``help`` when the whole message is that word."""
    word = text.strip().lower().lstrip("/")
    return word if word in COMMANDS else None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _convert(text: str) -> str:
    text = _escape(text)
    text = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)
    text = _HEADING.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _UNDERSCORE_BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    return text.replace(_BOLD_MARK, "*")


def to_mrkdwn(markdown: str) -> str:
    """Markdown as Slack's mrkdwn: bold, italics, links, headings, strike; code blocks left untouched."""
    return "".join(_escape(part) if part.startswith("```") else _convert(part) for part in _FENCE.split(markdown))


def split_message(text: str, limit: int = MESSAGE_CHARS) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut at paragraph, line or word boundaries."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"))
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest or not parts:
        parts.append(rest)
    return parts


def to_inert_text(text: str) -> str:
    """``text`` as Slack shows it when posted with ``mrkdwn`` off: ``&``, ``<`` and ``>`` escaped (so no ``<url|label>``
    link, ``<@U…>`` mention or ``<!channel>`` ping can be written), URLs and domain names defanged so Slack links none.
    """
    return _escape(defang(text))
