"""Ids match whole strings: a trailing newline (which ``$`` lets through) is refused everywhere an id comes in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.web import create_app
from bot.app import build_bot
from bot.config import load_settings
from bot.errors import ConfigError
from bot.memory.sqlite import SqliteStore
from bot.messages import StoredMessage
from bot.session import SessionKey
from tests.helpers import settings_for
from tests.test_cli import supportbot

SID = "nlsess01"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    settings = settings_for(SUPPORTBOT_MEMORY__STORE_URL="memory://")
    bot = build_bot(settings)
    async with TestClient(TestServer(create_app(bot, settings))) as test_client:
        yield test_client
    await bot.aclose()


@pytest.mark.parametrize("tail", ["\n", "\r\n", "\n\n", " "])
async def test_a_session_id_with_a_trailing_newline_is_refused(client: TestClient, tail: str) -> None:
    response = await client.post("/api/chat", json={"session_id": SID + tail, "message": "hi"})
    assert response.status == 400 and "session_id" in (await response.json())["error"]
    history = await client.get(f"/api/sessions/{SID}%0A/history")
    assert history.status == 400


@pytest.mark.parametrize("tail", ["\n", "\r\n", "\n\n"])
async def test_a_message_id_with_a_trailing_newline_is_refused(client: TestClient, tail: str) -> None:
    response = await client.post("/api/chat", json={"session_id": SID, "message": "hi", "message_id": "m1" + tail})
    assert response.status == 400 and "message_id" in (await response.json())["error"]
    fine = await client.post("/api/chat", json={"session_id": SID, "message": "hi", "message_id": "m1"})
    assert fine.status == 200 and (await fine.json())["message_id"] == "m1"


def test_a_session_key_with_a_trailing_newline_does_not_parse() -> None:
    key = SessionKey("slack", "T1", "C1", None, "U1")
    assert SessionKey.parse(key.id) == key
    for tail in ("\n", "\r\n", " "):
        with pytest.raises(ValueError):
            SessionKey.parse(key.id + tail)


async def _create(path: Path) -> None:
    """A database holding one turn of ``slack:T1:C1:-:U1``."""
    store = SqliteStore(str(path))
    start = await store.begin_turn(SessionKey.parse("slack:T1:C1:-:U1"), event_id="e1", window=5)
    assert start.lease is not None
    await store.commit_turn(start.lease, (StoredMessage("user", "printer jammed", 1.0, user="U1"),), platform="slack")
    await store.aclose()


def test_the_cli_reads_a_pasted_id_with_a_trailing_newline_as_the_same_session(tmp_path: Path) -> None:
    """An operator's paste may carry a newline: it names the same session, never another one."""
    env = {"SUPPORTBOT_CONFIG": "", "SUPPORTBOT_MEMORY__STORE_URL": f"sqlite:///{tmp_path}/s.db", "PATH": "/usr/bin"}
    asyncio.run(_create(tmp_path / "s.db"))
    for command in ("show", "audit"):
        shown = supportbot(env, "sessions", command, "slack:T1:C1:-:U1\n")
        assert shown.returncode == 0, (command, shown.stderr)
    shown = supportbot(env, "sessions", "show", "slack:T1:C1:-:U1\n")
    assert "printer jammed" in shown.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SUPPORTBOT_SLACK__ESCALATION_CHANNEL", "C0ESCALATE\n"), ("SUPPORTBOT_SLACK__COMMAND", "/helpdesk\n")],
)
def test_configured_ids_with_a_trailing_newline_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_settings("/dev/null", env={variable: value})
    assert load_settings("/dev/null", env={variable: value.strip()})
