"""Discord ids in the core's terms: which channel, thread and user a message or a slash command belongs to."""

from __future__ import annotations

from dataclasses import dataclass, replace

import discord

from bot.messages import IncomingMessage

PLATFORM = "discord"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a conversation lives.

    Attributes:
        guild_id: the server; ``None`` for a direct message.
        channel_id: the text channel or DM; for a thread, the thread's parent channel.
        thread_id: the thread the conversation lives in, or ``None``.
    """

    guild_id: int | None
    channel_id: int
    thread_id: int | None = None

    def in_thread(self, thread_id: int) -> Place:
        """The same channel, inside thread ``thread_id`` (the thread a mention is about to open)."""
        return replace(self, thread_id=thread_id)


def place_of(channel: discord.abc.Snowflake, *, guild_id: int | None) -> Place:
    """The place of a message or command sent in ``channel``: a thread maps to its parent plus its own id."""
    if isinstance(channel, discord.Thread):
        return Place(guild_id, channel.parent_id, channel.id)
    return Place(guild_id, channel.id)


def incoming_message(place: Place, *, user_id: int, text: str, message_id: int, sent_at: float) -> IncomingMessage:
    """The core's view of one Discord message.

    Discord message ids are unique, so the message id is the idempotency key: a redelivered message is answered once.
    A message without a guild is a direct message.
    """
    return IncomingMessage(
        platform=PLATFORM,
        workspace=None if place.guild_id is None else str(place.guild_id),
        channel=str(place.channel_id),
        thread=None if place.thread_id is None else str(place.thread_id),
        user=str(user_id),
        text=text,
        event_id=str(message_id),
        is_direct=place.guild_id is None,
        timestamp=sent_at,
    )
