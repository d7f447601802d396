"""The ``supportbot`` command: terminal chat, session administration and the server.

Imports of the bot itself (LangChain, pydantic, the stores) happen inside the commands, so ``--help`` and
``--version`` answer at once.
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import click

from bot.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import SupportBot
    from bot.inbox import InboxStats, PendingEntry
    from bot.memory import SessionStore
    from bot.messages import IncomingMessage
    from bot.session import SessionKey

T = TypeVar("T")

CHAT_HELP = """Commands:
  /session NAME   switch to (or start) the session NAME
  /reset          forget the current session
  /history        show the current session's messages
  /help           this text
  /quit           leave (end of input works too)"""


def _fail(message: str, code: int = 1) -> NoReturn:
    from bot.logs import Scrubber

    # A store's or a library's error may quote a URL or a credential: the operator's terminal gets it scrubbed too.
    context = click.get_current_context(silent=True)
    settings = context.find_root().obj if context is not None else None
    scrub = Scrubber(settings.secret_values() if settings is not None else ())
    click.echo(f"supportbot: {scrub(message)}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    from bot.config import load_settings

    root = ctx.find_root()
    if root.obj is None:
        try:
            root.obj = load_settings(root.params.get("config_path"))
        except ConfigError as exc:
            _fail(f"config error: {exc}", code=2)
    settings: Settings = root.obj
    return settings


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except StoreUnavailable as exc:
        _fail(f"the store is unavailable: {exc}")
    except ConfigError as exc:
        _fail(f"config error: {exc}", code=2)


def _sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file the configuration names, if it names one."""
    from bot.memory.sqlite import sqlite_path

    url = settings.store_url
    if not url.startswith("sqlite://") or url.endswith(":memory:"):
        return None
    return Path(sqlite_path(url)).absolute()


async def _with_store(settings: Settings, action: Callable[[SessionStore], Awaitable[T]]) -> T:
    from bot.app import build_store

    store = build_store(settings)
    try:
        return await action(store)
    finally:
        await store.aclose()


def _admin(ctx: click.Context, action: Callable[[SessionStore], Awaitable[T]]) -> T:
    """Run ``action`` on the configured store. Administration never creates a database: a SQLite path that does
    not exist is most likely mistyped."""
    settings = _settings(ctx)
    path = _sqlite_file(settings)
    if path is not None and not path.exists():
        _fail(
            f"found no SQLite database at {path} (from {settings.origin('memory', 'store_url')}), so there are no "
            "sessions to administer; `supportbot chat` and `supportbot serve` create it"
        )
    return _run(_with_store(settings, action))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _turns(count: int) -> str:
    return f"{count} turn" if count == 1 else f"{count} turns"


async def _find(store: SessionStore, text: str) -> SessionKey:
    """The one session ``text`` names: a session id, a terminal session name, a web tab id or a thread link.

    Raises:
        click.UsageError: it names no session, or several (they are listed, to pick one).
    """
    from bot.lookup import find_sessions, parse_reference
    from bot.session import SessionKey

    try:
        reference = parse_reference(text)
    except ValueError as exc:
        raise click.UsageError(f"{exc}; `supportbot sessions list` shows the ids") from None
    if reference.key is not None:
        return reference.key
    found = find_sessions(reference, [r.session_id for r in await store.list_sessions()])
    if not found:
        raise LookupError(f"no session matches {text!r}; `supportbot sessions list` shows the ids")
    if len(found) > 1:
        raise click.UsageError(f"{text!r} matches {len(found)} sessions; name one: " + ", ".join(found))
    return SessionKey.parse(found[0])


def _in_session(
    ctx: click.Context, text: str, action: Callable[[SessionStore, SessionKey], Awaitable[T]]
) -> tuple[SessionKey, T]:
    """``action`` on the session ``text`` names; a clear error and exit code when it names none."""

    async def run(store: SessionStore) -> tuple[SessionKey, T]:
        key = await _find(store, text)
        return key, await action(store, key)

    try:
        return _admin(ctx, run)
    except LookupError as exc:
        _fail(str(exc.args[0]))
    except click.UsageError as exc:
        _fail(exc.message, code=2)


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (default: config.yaml).")
@click.version_option(package_name="supportbot", prog_name="supportbot", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Supportbot: an IT-helpdesk bot whose memory is scoped per session.

    Session ids: `sessions` commands take the id that `sessions list` prints, a terminal session's name
    (default), a web tab's id, or a Slack or Discord link to the thread.
    """
    from bot.logs import configure_logging

    settings = _settings(ctx)
    configure_logging(level=settings.log.level, fmt=settings.log.format, secrets=settings.secret_values())


@main.command()
@click.option("--session", "session_name", default="default", show_default=True, help="Session name to start in.")
@click.option("-v", "--verbose", is_flag=True, help="Show the log in the terminal instead of the log file.")
@click.pass_context
def chat(ctx: click.Context, session_name: str, verbose: bool) -> None:
    """Chat in the terminal on the configured store and model. Reads stdin line by line.

    The log goes to log.chat_file (~/.local/state/supportbot/chat.log), so warnings never land between a prompt
    and its answer; -v shows it here instead. Exits 1 when a message could not be stored.
    """
    from bot.config import default_chat_log
    from bot.logs import ProblemCounter, configure_logging

    settings = _settings(ctx)
    log_file = None if verbose else Path(settings.log.chat_file or default_chat_log(os.environ))
    try:
        configure_logging(level=settings.log.level, fmt=settings.log.format, file=log_file)
    except OSError as exc:
        _fail(f"cannot write the chat log {log_file} (log.chat_file): {exc.strerror or exc}; -v logs here instead")
    problems = ProblemCounter()
    logging.getLogger().addHandler(problems)
    unstored = _run(_chat(settings, session_name, log_file))
    if problems.count and log_file is not None:
        click.echo(f"supportbot: {problems.count} warning(s) or error(s) logged to {log_file}", err=True)
    if unstored:
        _fail(f"{unstored} message(s) could not be stored: the store was unavailable")


def _cli_message(session: str, text: str) -> IncomingMessage:
    from bot.messages import IncomingMessage

    return IncomingMessage(
        platform="cli",
        workspace=None,
        channel=session,
        thread=None,
        user=getpass.getuser(),
        text=text,
        event_id=uuid.uuid4().hex,
        is_direct=True,
    )


def _warm_up(bot: SupportBot) -> asyncio.Task[Any] | None:
    """Start loading a local embedding model now; turns do not wait for it (they skip recall until it is ready)."""
    if bot.recall is None or not bot.recall.preload:
        return None
    return asyncio.get_running_loop().create_task(bot.recall.embed("warm up"), name="supportbot-warm-recall")


async def _chat(settings: Settings, session: str, log_file: Path | None) -> int:
    """Run the chat until end of input; the number of messages that could not be stored."""
    from bot.app import build_bot, describe_setup
    from bot.core import MEMORY_UNAVAILABLE_REPLY

    interactive = sys.stdin.isatty()
    bot = build_bot(settings)
    out = sys.stdout
    unstored = 0
    try:
        await bot.store.ping()  # a store that cannot be reached stops the chat before the first question
        warm_up = _warm_up(bot)
        if interactive:
            out.write("Supportbot — terminal chat\n")
            for line in describe_setup(settings, bot):
                out.write(f"  {line}\n")
            out.write(f"  log: {log_file} (chat -v shows it here instead)\n" if log_file else "  log: this terminal\n")
            out.write(f"Session '{session}' (later: supportbot sessions show {session}). Type /help for commands.\n")
        while True:
            if interactive:
                out.write(f"[{session}] you> ")
                out.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if text.startswith("/"):
                command, _, arg = text.partition(" ")
                if command == "/quit":
                    break
                session = await _chat_command(bot.store, session, command, arg.strip(), out)
                continue
            if not text:
                continue
            out.write("bot> ")
            said = []
            async for chunk in bot.stream(_cli_message(session, text)):
                said.append(chunk)
                out.write(chunk)
                out.flush()
            out.write("\n")
            out.flush()
            unstored += MEMORY_UNAVAILABLE_REPLY in "".join(said)
        if warm_up is not None and not warm_up.done():
            warm_up.cancel()  # the load itself finishes in its thread before the process can exit
    finally:
        await bot.aclose()
        await bot.store.aclose()
    return unstored


async def _chat_command(store: SessionStore, session: str, command: str, arg: str, out: TextIO) -> str:
    from bot.session import SessionKey

    key = SessionKey("cli", None, session, None, getpass.getuser())
    if command == "/session":
        if not arg:
            out.write(f"current session: {session}\n")
            return session
        out.write(f"switched to session '{arg}'\n")
        return arg
    if command == "/reset":
        await store.delete(key)
        out.write(f"session '{session}' forgotten\n")
    elif command == "/history":
        record = await store.get(key)
        if record is None or not record.messages:
            out.write("(no messages yet)\n")
        for message in record.messages if record else ():
            out.write(f"{message.role}: {message.content}\n")
    else:
        out.write(CHAT_HELP + "\n")
    return session


@main.group()
def sessions() -> None:
    """List, show, export and delete sessions.

    ID is what `sessions list` prints, or a terminal session's name, a web tab's id, or a thread's link.
    """


@sessions.command("list")
@click.pass_context
def sessions_list(ctx: click.Context) -> None:
    """Every live session, most recently active first: its id, what it is, turns, last activity."""
    from bot.lookup import describe_key
    from bot.session import SessionKey

    records = _admin(ctx, lambda store: store.list_sessions())
    if not records:
        click.echo("no sessions")
    for r in records:
        what = describe_key(SessionKey.parse(r.session_id))
        click.echo(f"{r.session_id}\t{what}\t{_turns(r.meta.turns)}\tlast active {_when(r.meta.last_active)}")


@main.command("inbox")
@click.option("--limit", default=50, show_default=True, help="Entries listed at most.")
@click.pass_context
def inbox_list(ctx: click.Context, limit: int) -> None:
    """Messages recorded and not yet answered, oldest first: who holds each, and how often it was tried."""
    from bot.app import build_inbox

    settings = _settings(ctx)
    path = _sqlite_file(settings)
    if path is not None and not path.exists():
        _fail(f"found no SQLite database at {path} (from {settings.origin('memory', 'store_url')})")

    async def look() -> tuple[InboxStats, list[PendingEntry]]:
        inbox = build_inbox(settings)
        try:
            return await inbox.stats(), await inbox.pending(limit=limit)
        finally:
            await inbox.aclose()

    stats, entries = _run(look())
    if not entries:
        click.echo("the inbox is empty: every message recorded has been answered")
        return
    click.echo(f"{stats.depth} waiting, {stats.in_flight} being answered, oldest {stats.oldest_age:.0f} s old")
    for e in entries:
        holder = f"held by {e.owner}" if e.owner else "waiting"
        tries = f", tried {e.attempts} times" if e.attempts > 1 else ""
        click.echo(
            f"{e.entry_id}\t{e.platform}\t{e.session_id or '-'}\t{e.event_id}\t{_when(e.enqueued)}\t{holder}{tries}"
        )


@sessions.command("show")
@click.argument("session_id", metavar="ID")
@click.pass_context
def sessions_show(ctx: click.Context, session_id: str) -> None:
    """A session's metadata and messages."""
    from bot.lookup import describe_key

    key, record = _in_session(ctx, session_id, lambda store, key: store.get(key))
    if record is None:
        _fail(f"no session {session_id}")
    meta = record.meta
    click.echo(f"session {record.session_id}: {describe_key(key)}, {_turns(meta.turns)}")
    click.echo(f"created {_when(meta.created)}, last active {_when(meta.last_active)}")
    click.echo(f"users: {', '.join(record.users) or '-'}")
    if record.summary:
        click.echo(f"summary: {record.summary}")
    for m in record.messages:
        click.echo(f"[{_when(m.ts)}] {m.role}: {m.content}")


@sessions.command("export")
@click.argument("session_id", metavar="ID")
@click.pass_context
def sessions_export(ctx: click.Context, session_id: str) -> None:
    """A session as JSON on stdout."""
    from bot.export import session_document

    async def document(store: SessionStore, key: SessionKey) -> dict[str, Any] | None:
        record = await store.get(key)
        if record is None:
            return None
        return session_document(record, audit=await store.audit(key), recall=await store.recall_items(key))

    _, exported = _in_session(ctx, session_id, document)
    if exported is None:
        _fail(f"no session {session_id}")
    click.echo(json.dumps(exported, ensure_ascii=False, indent=2))


@sessions.command("audit")
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.pass_context
def sessions_audit(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """A session's tool calls, oldest first: time, tool, outcome, latency, arguments (secrets redacted)."""
    _, entries = _in_session(ctx, session_id, lambda store, key: store.audit(key))
    if not entries:
        click.echo(f"no tool calls recorded for {session_id}")
        return
    for entry in entries:
        if as_json:
            click.echo(entry.to_json())
            continue
        arguments = json.dumps(dict(entry.arguments), ensure_ascii=False)
        click.echo(
            f"[{_when(entry.time)}] {entry.tool} {entry.outcome} {entry.latency_ms:.0f} ms "
            f"event={entry.event_id} args={arguments} -> {entry.detail}"
        )


@sessions.command("resolve")
@click.argument("session_id", metavar="ID")
@click.pass_context
def sessions_resolve(ctx: click.Context, session_id: str) -> None:
    """Close a session's hand-over to a person, so the bot may hand the session over again."""
    from bot.memory import AuditEntry
    from bot.quotas import RESOLVE_TOOL

    async def resolve(store: SessionStore, key: SessionKey) -> bool:
        record = await store.get(key)
        if record is None:
            return False
        entry = AuditEntry(
            time=time.time(),
            session_id=key.id,
            event_id="operator",
            tool=RESOLVE_TOOL,
            arguments={},
            outcome="ok",
            detail="hand-over resolved by an operator",
            latency_ms=0.0,
        )
        user = key.user or (record.users[0] if record.users else "")
        await store.append_audit(key, entry, platform=key.platform, user=user)
        return True

    _, resolved = _in_session(ctx, session_id, resolve)
    if not resolved:
        _fail(f"no session {session_id}")
    click.echo(f"resolved the hand-over of {session_id}")


@sessions.command("delete")
@click.argument("session_id", metavar="ID")
@click.pass_context
def sessions_delete(ctx: click.Context, session_id: str) -> None:
    """Forget a session: every key it owns."""
    key, existed = _in_session(ctx, session_id, lambda store, key: store.delete(key))
    if not existed:
        _fail(f"no session {session_id}")
    click.echo(f"deleted {key.id}")


@sessions.command("export-user")
@click.argument("platform")
@click.argument("user")
@click.pass_context
def sessions_export_user(ctx: click.Context, platform: str, user: str) -> None:
    """Every session USER of PLATFORM wrote in, as a JSON list."""
    from bot.privacy import export_user

    documents = _admin(ctx, lambda store: export_user(store, platform, user))
    click.echo(json.dumps(documents, ensure_ascii=False, indent=2))


@sessions.command("erase-user")
@click.argument("platform")
@click.argument("user")
@click.pass_context
def sessions_erase_user(ctx: click.Context, platform: str, user: str) -> None:
    """Delete every session USER of PLATFORM wrote in (shared thread sessions whole), and the user's index."""
    from bot.privacy import erase_user

    erased = _admin(ctx, lambda store: erase_user(store, platform, user))
    click.echo(f"erased {erased} session(s) of {platform} user {user}")


def _check_port(settings: Settings) -> None:
    """Stop with one clear line, before any banner, when the web server could not listen."""
    host, port = settings.server.host, settings.server.port
    if port == 0:
        return
    origin = settings.origin("server", "port")
    try:
        with socket.create_server((host, port)):  # SO_REUSEADDR, as the server itself binds
            pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            _fail(f"port {port} on {host} is already in use ({origin}); set PORT to a free port, e.g. PORT=8081")
        _fail(
            f"cannot listen on {host}:{port} ({origin}, {settings.origin('server', 'host')}): {exc.strerror or exc}",
            code=2,
        )


@main.command()
@click.option(
    "--role",
    type=click.Choice(["all", "web", "worker"]),
    default=None,
    help="all (default): take messages and answer them; web: take Slack, Discord and web chat messages and record "
    "them; worker: answer what the inbox holds. Overrides server.role.",
)
@click.pass_context
def serve(ctx: click.Context, role: str | None) -> None:
    """Serve every configured surface in one process until SIGTERM or Ctrl+C."""
    from adapters import REGISTRY, load_adapter
    from bot.runner import Runner

    settings = _settings(ctx)
    if role is not None:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update={"role": role})})
    _check_port(settings)
    if _sqlite_file(settings) is not None:
        # Create the database now, so `sessions list` finds it before the first message (and a path that cannot
        # be written stops the start rather than every turn).
        _run(_with_store(settings, lambda store: store.ping()))
    runner = Runner(settings, names=list(REGISTRY), load=load_adapter)
    try:
        _run(runner.serve(say=lambda line: click.echo(line)))
    except OSError as exc:
        _fail(f"cannot serve: {exc}")
