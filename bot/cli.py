"""The ``supportbot`` command: terminal chat, session administration and the server."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from bot.config import Settings, load_settings, redact_url
from bot.errors import ConfigError, StoreUnavailable
from bot.export import session_document
from bot.logs import Scrubber, configure_logging
from bot.memory import AuditEntry, SessionStore
from bot.messages import IncomingMessage
from bot.model import describe_model
from bot.privacy import erase_user, export_user
from bot.quotas import RESOLVE_TOOL
from bot.session import SessionKey

T = TypeVar("T")

CHAT_HELP = """Commands:
  /session NAME   switch to (or start) the session NAME
  /reset          forget the current session
  /history        show the current session's messages
  /help           this text
  /quit           leave (end of input works too)"""


def _fail(message: str, code: int = 1) -> None:
    # A store's or a library's error may quote a URL or a credential: the operator's terminal gets it scrubbed too.
    context = click.get_current_context(silent=True)
    settings = context.find_object(Settings) if context is not None else None
    scrub = Scrubber(settings.secret_values() if settings is not None else ())
    click.echo(f"supportbot: {scrub(message)}", err=True)
    sys.exit(code)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except StoreUnavailable as exc:
        _fail(f"the store is unavailable: {exc}")
        raise AssertionError("unreachable") from exc
    except ConfigError as exc:
        _fail(f"config error: {exc}", code=2)
        raise AssertionError("unreachable") from exc


async def _with_store(settings: Settings, action: Callable[[SessionStore], Awaitable[T]]) -> T:
    from bot.app import build_store

    store = build_store(settings)
    try:
        return await action(store)
    finally:
        await store.aclose()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _parse_id(session_id: str) -> SessionKey:
    try:
        return SessionKey.parse(session_id)
    except ValueError as exc:
        _fail(f"{exc}; `supportbot sessions list` shows the ids", code=2)
        raise AssertionError("unreachable") from exc


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (default: config.yaml).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Supportbot: an IT-helpdesk bot whose memory is scoped per session."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        _fail(f"config error: {exc}", code=2)
    configure_logging(level=settings.log.level, fmt=settings.log.format, secrets=settings.secret_values())
    ctx.obj = settings


@main.command()
@click.option("--session", "session_name", default="default", show_default=True, help="Session name to start in.")
@click.pass_context
def chat(ctx: click.Context, session_name: str) -> None:
    """Chat in the terminal on the configured store and model. Reads stdin line by line."""
    settings = _settings(ctx)
    if settings.log.level == "INFO":
        # A log line per turn is noise between the answers of a terminal chat.
        logging.getLogger().setLevel(logging.WARNING)
    _run(_chat(settings, session_name))


def _cli_message(session: str, text: str) -> IncomingMessage:
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


async def _chat(settings: Settings, session: str) -> None:
    from bot.app import build_bot

    interactive = sys.stdin.isatty()
    bot = build_bot(settings)
    out = sys.stdout
    if interactive:
        out.write(f"Supportbot — store {redact_url(settings.store_url)}, model {describe_model(settings)}\n")
        out.write(f"Session '{session}'. Type /help for commands.\n")
    try:
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
            async for chunk in bot.stream(_cli_message(session, text)):
                out.write(chunk)
                out.flush()
            out.write("\n")
            out.flush()
    finally:
        await bot.aclose()
        await bot.store.aclose()


async def _chat_command(store: SessionStore, session: str, command: str, arg: str, out: Any) -> str:
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
    """List, show, export and delete sessions."""


@sessions.command("list")
@click.pass_context
def sessions_list(ctx: click.Context) -> None:
    """Every live session, most recently active first."""
    records = _run(_with_store(_settings(ctx), lambda store: store.list_sessions()))
    if not records:
        click.echo("no sessions")
    for r in records:
        click.echo(f"{r.session_id}\t{r.meta.platform}\t{r.meta.turns} turns\tlast active {_when(r.meta.last_active)}")


@sessions.command("show")
@click.argument("session_id")
@click.pass_context
def sessions_show(ctx: click.Context, session_id: str) -> None:
    """A session's metadata and messages."""
    key = _parse_id(session_id)
    record = _run(_with_store(_settings(ctx), lambda store: store.get(key)))
    if record is None:
        _fail(f"no session {session_id}")
        return
    meta = record.meta
    click.echo(f"session {record.session_id} ({meta.platform}), {meta.turns} turns")
    click.echo(f"created {_when(meta.created)}, last active {_when(meta.last_active)}")
    click.echo(f"users: {', '.join(record.users) or '-'}")
    if record.summary:
        click.echo(f"summary: {record.summary}")
    for m in record.messages:
        click.echo(f"[{_when(m.ts)}] {m.role}: {m.content}")


@sessions.command("export")
@click.argument("session_id")
@click.pass_context
def sessions_export(ctx: click.Context, session_id: str) -> None:
    """A session as JSON on stdout."""
    key = _parse_id(session_id)

    async def document(store: SessionStore) -> dict[str, Any] | None:
        record = await store.get(key)
        if record is None:
            return None
        return session_document(record, audit=await store.audit(key), recall=await store.recall_items(key))

    exported = _run(_with_store(_settings(ctx), document))
    if exported is None:
        _fail(f"no session {session_id}")
        return
    click.echo(json.dumps(exported, ensure_ascii=False, indent=2))


@sessions.command("audit")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.pass_context
def sessions_audit(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """A session's tool calls, oldest first: time, tool, outcome, latency, arguments (secrets redacted)."""
    key = _parse_id(session_id)
    entries = _run(_with_store(_settings(ctx), lambda store: store.audit(key)))
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
@click.argument("session_id")
@click.pass_context
def sessions_resolve(ctx: click.Context, session_id: str) -> None:
    """Close a session's hand-over to a person, so the bot may hand the session over again."""
    key = _parse_id(session_id)

    async def resolve(store: SessionStore) -> bool:
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

    if not _run(_with_store(_settings(ctx), resolve)):
        _fail(f"no session {session_id}")
    click.echo(f"resolved the hand-over of {session_id}")


@sessions.command("delete")
@click.argument("session_id")
@click.pass_context
def sessions_delete(ctx: click.Context, session_id: str) -> None:
    """Forget a session: every key it owns."""
    key = _parse_id(session_id)
    existed = _run(_with_store(_settings(ctx), lambda store: store.delete(key)))
    if not existed:
        _fail(f"no session {session_id}")
    click.echo(f"deleted {session_id}")


@sessions.command("export-user")
@click.argument("platform")
@click.argument("user")
@click.pass_context
def sessions_export_user(ctx: click.Context, platform: str, user: str) -> None:
    """Every session USER of PLATFORM wrote in, as a JSON list."""
    documents = _run(_with_store(_settings(ctx), lambda store: export_user(store, platform, user)))
    click.echo(json.dumps(documents, ensure_ascii=False, indent=2))


@sessions.command("erase-user")
@click.argument("platform")
@click.argument("user")
@click.pass_context
def sessions_erase_user(ctx: click.Context, platform: str, user: str) -> None:
    """Delete every session USER of PLATFORM wrote in (shared thread sessions whole), and the user's index."""
    erased = _run(_with_store(_settings(ctx), lambda store: erase_user(store, platform, user)))
    click.echo(f"erased {erased} session(s) of {platform} user {user}")


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Serve every configured surface in one process until SIGTERM or Ctrl+C."""
    from adapters import REGISTRY, load_adapter
    from bot.runner import Runner

    runner = Runner(_settings(ctx), names=list(REGISTRY), load=load_adapter)
    try:
        _run(runner.serve(say=lambda line: click.echo(line)))
    except OSError as exc:
        _fail(f"cannot serve: {exc}")
