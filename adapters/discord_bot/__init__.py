"""The Discord adapter: discord.py's gateway client in, :class:`~bot.core.SupportBot` turns, streamed replies out.

See :mod:`adapters.discord_bot.adapter` for which messages are answered and how edits and deletions are treated.
"""

from adapters.discord_bot.adapter import DiscordAdapter, discord_intents
from adapters.discord_bot.mapping import Place, incoming_message, place_of
from adapters.discord_bot.text import split_message, strip_mentions, thread_name

__all__ = [
    "DiscordAdapter",
    "Place",
    "discord_intents",
    "incoming_message",
    "place_of",
    "split_message",
    "strip_mentions",
    "thread_name",
]
