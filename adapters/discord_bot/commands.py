"""The slash commands: /reset, /summary, /export and /help, each answered only to the user who ran it."""

from __future__ import annotations

import io
import logging

import discord
from discord import app_commands

from adapters.discord_bot.mapping import incoming_message, place_of
from adapters.discord_bot.replies import NO_PINGS
from bot.core import SupportBot
from bot.export import recap, session_json
from bot.session import SessionKey

log = logging.getLogger("supportbot.discord")

EXPORT_INLINE_CHARS = 1_900  # longer exports go out as a file (a message holds 2,000 characters)
SUMMARY_CHARS = 1_900  # /summary answers in one message

HELP_TEXT = (
    "**Supportbot** answers IT questions and remembers the conversation.\n"
    "• In a server, mention me. In a thread I started or joined, keep writing without mentioning me.\n"
    "• In a direct message, just write.\n"
    "• `/summary` shows what I remember of this conversation, `/export` sends it to you as JSON, "
    "`/reset` makes me forget it. Run them in the thread or DM the conversation lives in.\n"
    "I do not answer edited messages again; send a new message instead."
)
RESET_DONE = "Done: I have forgotten our conversation here. Your next message starts a new one."
RESET_NOTHING = "There was nothing to forget: we have no conversation here yet."
NOTHING_YET = "We have no conversation here yet, so there is nothing to show."
COMMAND_FAILED = "Sorry, that command failed on my side. Please try again in a minute."

Interaction = discord.Interaction[discord.Client]


def session_key_of(bot: SupportBot, interaction: Interaction) -> SessionKey:
    """The session of the user who ran a command, in the channel, thread or DM where they ran it.

    The same mapping as for messages, through the core's scope policy, so /reset forgets exactly the session the
    user's messages in that place go to.

    Raises:
        app_commands.AppCommandError: the command came without a channel (Discord always sends one for slash
            commands; the error handler answers politely if it ever does not).
    """
    if interaction.channel is None:
        raise app_commands.AppCommandError("the interaction names no channel")
    msg = incoming_message(
        place_of(interaction.channel, guild_id=interaction.guild_id),
        user_id=interaction.user.id,
        text="",
        message_id=interaction.id,
        sent_at=interaction.created_at.timestamp(),
    )
    return bot.session_key(msg)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


async def _reply(interaction: Interaction, text: str, *, file: discord.File | None = None) -> None:
    if file is None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
    else:
        await interaction.response.send_message(text, file=file, ephemeral=True, allowed_mentions=NO_PINGS)


def add_commands(tree: app_commands.CommandTree[discord.Client], bot: SupportBot) -> None:
    """Register the commands on ``tree``; every answer is ephemeral."""

    @tree.command(name="reset", description="Forget our conversation in this channel, thread or DM")
    async def reset(interaction: Interaction) -> None:
        existed = await bot.reset(session_key_of(bot, interaction))
        await _reply(interaction, RESET_DONE if existed else RESET_NOTHING)

    @tree.command(name="summary", description="Show what I remember of our conversation here")
    async def summary(interaction: Interaction) -> None:
        record = await bot.store.get(session_key_of(bot, interaction))
        await _reply(interaction, _clip(recap(record), SUMMARY_CHARS) if record and record.messages else NOTHING_YET)

    @tree.command(name="export", description="Send you our conversation here as JSON (only you see it)")
    async def export(interaction: Interaction) -> None:
        record = await bot.store.get(session_key_of(bot, interaction))
        if record is None:
            await _reply(interaction, NOTHING_YET)
            return
        data = session_json(record)
        if len(data) <= EXPORT_INLINE_CHARS:
            await _reply(interaction, f"```json\n{data}\n```")
        else:
            file = discord.File(io.BytesIO(data.encode()), filename="supportbot-session.json")
            await _reply(interaction, "Our conversation here, as JSON:", file=file)

    @tree.command(name="help", description="How to talk to Supportbot")
    async def help_(interaction: Interaction) -> None:
        await _reply(interaction, HELP_TEXT)

    @tree.error
    async def on_error(interaction: Interaction, error: app_commands.AppCommandError) -> None:
        command = interaction.command.name if interaction.command is not None else "?"
        session = session_key_of(bot, interaction).id if interaction.channel is not None else None
        log.error("/%s failed (session %s): %s", command, session, error, exc_info=error, extra={"session_id": session})
        try:
            if interaction.response.is_done():
                await interaction.followup.send(COMMAND_FAILED, ephemeral=True, allowed_mentions=NO_PINGS)
            else:
                await _reply(interaction, COMMAND_FAILED)
        except discord.HTTPException as exc:
            log.warning("could not tell the user that /%s failed: %s", command, exc)


async def sync_commands(tree: app_commands.CommandTree[discord.Client], *, guilds: tuple[int, ...]) -> None:
    """Publish the commands to ``guilds`` (instant), or globally when none are configured (up to an hour).

    A guild that refuses (the bot was removed, or invited without ``applications.commands``) is logged and skipped.
    """
    if not guilds:
        try:
            await tree.sync()
        except discord.HTTPException as exc:
            log.warning("could not publish the slash commands globally: %s", exc)
        return
    for guild_id in guilds:
        guild = discord.Object(id=guild_id)
        tree.copy_global_to(guild=guild)
        try:
            await tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.warning("could not publish the slash commands to guild %s: %s", guild_id, exc)
