"""Posting one answer while it streams: one message edited in place, extra parts as follow-up messages."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import discord

from adapters.discord_bot.text import split_message

log = logging.getLogger("supportbot.discord")

EDIT_INTERVAL_S = 1.0  # at most one edit of the growing message per second (Discord rate-limits edits)
TYPING_RENEW_S = 8.0  # Discord shows "typing…" for about 10 s per trigger

# Model output must never ping anyone: no @everyone/@here, roles, users, nor the author of the message replied to.
NO_PINGS = discord.AllowedMentions.none()


class ReplyPoster:
    """Shows a growing answer in Discord.

    The first part replies to the user's message (or opens the conversation in a new thread); when the text outgrows
    one message, the finished part is edited to its final text and the rest continues in a follow-up message.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        reference: discord.MessageReference | None,
        existing: discord.PartialMessage | None = None,
    ) -> None:
        """Post into ``channel``; the first part quotes ``reference`` when given. With ``existing`` (a message an
        earlier attempt started the reply in), the first part is written there instead of a new message."""
        self._channel = channel
        self._reference = reference
        self._sent: list[discord.Message | discord.PartialMessage] = [] if existing is None else [existing]
        self._shown: list[str] = [] if existing is None else [""]
        self._posted_at = -math.inf
        self.on_posted: Callable[[str], Awaitable[None]] | None = None  # told "channel_id/message_id" of the first

    @property
    def started(self) -> bool:
        """Whether anything was posted yet."""
        return bool(self._sent)

    def due(self) -> bool:
        """Whether to show the text now: nothing is posted yet, or the last post is ``EDIT_INTERVAL_S`` old."""
        return not self._sent or time.monotonic() - self._posted_at >= EDIT_INTERVAL_S

    async def show(self, text: str) -> None:
        """Bring the posted messages in line with ``text``: edit changed parts, send new ones.

        Earlier parts never change once a later part exists (the splitter only looks ahead within a part), so a
        call edits at most the last two messages.
        """
        for index, part in enumerate(split_message(text)):
            if index == len(self._sent):
                sent = await post(self._channel, part, reference=self._reference if index == 0 else None)
                self._sent.append(sent)
                self._shown.append(part)
                if index == 0 and self.on_posted is not None:
                    await self.on_posted(f"{sent.channel.id}/{sent.id}")
            elif part != self._shown[index]:
                self._sent[index] = await self._sent[index].edit(content=part, allowed_mentions=NO_PINGS)
                self._shown[index] = part
        self._posted_at = time.monotonic()


async def post(
    channel: discord.abc.Messageable, text: str, *, reference: discord.MessageReference | None
) -> discord.Message:
    """Send ``text`` to ``channel``, quoting ``reference`` when given, pinging nobody."""
    if reference is None:
        return await channel.send(text, allowed_mentions=NO_PINGS, mention_author=False)
    return await channel.send(text, reference=reference, allowed_mentions=NO_PINGS, mention_author=False)


async def keep_typing(channel: discord.abc.Messageable) -> None:
    """Show "Supportbot is typing…" in ``channel`` until cancelled. A refused trigger only ends the indicator."""
    while True:
        try:
            await channel.typing()
        except discord.HTTPException as exc:
            log.debug("typing indicator refused: %s", exc)
            return
        await asyncio.sleep(TYPING_RENEW_S)
