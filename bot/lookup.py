"""Session ids as people see them: a terminal chat's session name, a web tab's id, a Slack or Discord link.

A stored session id (``web:-:7d65%2D…:-:7d65%2D…``) is exact but not what anyone has at hand. :func:`parse_reference`
turns what they do have into a pattern, and :func:`find_sessions` finds the stored sessions it names; a thread
link matches every user's session in that thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from bot.session import SessionKey

# https://acme.slack.com/archives/C0123ABCD/p1700000000000100?thread_ts=1700000000.000100&cid=C0123ABCD
_SLACK_LINK = re.compile(r"^/archives/(?P<channel>[A-Z0-9]+)/p(?P<seconds>\d{10})(?P<micros>\d{6})/?$")
# https://discord.com/channels/GUILD/CHANNEL_OR_THREAD[/MESSAGE]
_DISCORD_LINK = re.compile(r"^/channels/(?P<guild>\d+|@me)/(?P<channel>\d+)(?:/\d+)?/?$")


@dataclass(frozen=True, slots=True)
class Reference:
    """What a reference pins down; ``None`` matches anything."""

    text: str
    platform: str | None = None
    channel: str | None = None
    thread: str | None = None
    workspace: str | None = None
    key: SessionKey | None = None  # an exact session id
    name: str | None = None  # a bare word: a terminal session name or a web tab id

    def matches(self, key: SessionKey) -> bool:
        """Whether the session ``key`` is one this reference names."""
        if self.key is not None:
            return key == self.key
        if self.name is not None:
            return key.platform in ("cli", "web") and key.channel == self.name
        if self.platform is not None and key.platform != self.platform:
            return False
        if self.workspace is not None and key.workspace != self.workspace:
            return False
        if self.platform == "discord" and self.channel is not None:
            # A Discord link names a channel, or a thread (itself a channel): sessions in either match.
            return self.channel in (key.channel, key.thread)
        if self.channel is not None and key.channel != self.channel:
            return False
        return self.thread is None or key.thread == self.thread


def parse_reference(text: str) -> Reference:
    """A reference from a session id, a Slack or Discord link, or a bare name.

    Raises:
        ValueError: a link that is neither Slack's nor Discord's message or thread link.
    """
    text = text.strip()
    try:
        return Reference(text, key=SessionKey.parse(text))
    except ValueError:
        pass
    if "://" not in text:
        return Reference(text, name=text)
    parts = urlsplit(text)
    host = parts.hostname or ""
    slack = _SLACK_LINK.match(parts.path)
    if host.endswith("slack.com") and slack:
        ts = f"{slack['seconds']}.{slack['micros']}"
        thread = parse_qs(parts.query).get("thread_ts", [ts])[0]
        return Reference(text, platform="slack", channel=slack["channel"], thread=thread)
    discord = _DISCORD_LINK.match(parts.path)
    if host.endswith(("discord.com", "discordapp.com")) and discord:
        guild = None if discord["guild"] == "@me" else discord["guild"]
        return Reference(text, platform="discord", workspace=guild, channel=discord["channel"])
    raise ValueError(f"not a Slack or Discord message link: {text!r}")


def find_sessions(reference: Reference, session_ids: Iterable[str]) -> list[str]:
    """The ids among ``session_ids`` that ``reference`` names, in the given order."""
    found = []
    for session_id in session_ids:
        try:
            key = SessionKey.parse(session_id)
        except ValueError:
            continue
        if reference.matches(key):
            found.append(session_id)
    return found


def describe_key(key: SessionKey) -> str:
    """The session in the words its users know it by: ``terminal session 'default' of alice``."""
    if key.platform == "cli":
        return f"terminal session '{key.channel}' of {key.user}"
    if key.platform == "web":
        return f"web tab {key.channel}"
    where = f"thread {key.thread} in {key.channel}" if key.thread else f"channel {key.channel}"
    who = f", user {key.user}" if key.user else ", everyone"
    return f"{key.platform} {where}{who}"
