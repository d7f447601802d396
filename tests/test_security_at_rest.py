"""Data at rest: what real turns leave in Redis and in the SQLite files, with encryption and after an erasure.

Every test plants distinctive words through real turns (the real ChatOpenAI client against the fake server, the
real toolbox and ticket webhook client, summary folds, entity extraction, recall) and then reads the store as an
attacker with a copy of it would: every key of every type on every Redis node, every byte of the SQLite database,
its write-ahead log and its shared-memory file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.app import build_bot, build_store
from bot.config import Settings
from bot.core import ERASED_REPLY, SupportBot
from bot.memory import SessionStore, StoreLimits
from bot.memory.memory import MemoryStore
from bot.memory.sqlite import SqliteStore
from bot.messages import ReplyKind, StoredMessage
from bot.privacy import erase_user
from bot.session import SessionKey
from tests.fakes.openai_server import FakeOpenAI, ToolCallReply, content_text, last_tool_results
from tests.fakes.webhook_server import FakeTicketWebhook
from tests.helpers import message, settings_for, settle
from tests.redis_cluster import RedisClusterServers
from tests.redis_server import RedisServer

# Each is planted by one path: the user's words, the summary the model writes, the fact it extracts, the address
# it puts into a ticket's arguments. Recalled turns carry the user's words again.
SAID = "Zanzibar7781"
SUMMARISED = "Okapi"
EXTRACTED = "Marmoset Tower"
TICKET_ADDRESS = "Wombleton"
PLANTED = (SAID, SUMMARISED, EXTRACTED, TICKET_ADDRESS)
CONVERSATION = (
    f"My laptop {SAID} will not boot",
    "I sit in the Marmoset Tower office, third floor",
    "Please open a ticket and send me a loaner",
    "Thanks, is there anything else I should try?",
    f"What did I tell you about {SAID}?",
)


class Conversation:
    """The fake model's side of the conversation, able to hold any kind of call back until released."""

    def __init__(self) -> None:
        self.holding: set[str] = set()
        self.arrived = {kind: asyncio.Event() for kind in ("chat", "fold", "extract")}
        self.release = asyncio.Event()

    async def respond(self, messages: list[dict[str, Any]]) -> str | ToolCallReply:
        system = content_text(messages[0].get("content"))
        kind = "fold" if "running summary" in system else "extract" if "Extract facts" in system else "chat"
        if kind in self.holding:
            self.arrived[kind].set()
            await self.release.wait()
        said = content_text(messages[-1].get("content"))
        if kind == "fold":
            return f"{SUMMARISED} summary. The user wrote, verbatim: {said}"
        if kind == "extract":
            return json.dumps({"location": "Marmoset Tower office"} if EXTRACTED in said else {})
        results = last_tool_results(messages)
        if results:
            return "Done. " + " ".join(content_text(r.get("content")) for r in results)
        if "ticket" in said:
            details = f"Send a loaner laptop to 17 Quokka Lane, {TICKET_ADDRESS}; the user says: {said}"
            return ToolCallReply([("create_ticket", {"summary": "Loaner laptop", "details": details})])
        return f"Noted: {said}"


@pytest.fixture
async def webhook() -> AsyncIterator[FakeTicketWebhook]:
    async with FakeTicketWebhook() as server:
        yield server


@pytest.fixture
def store_env(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment that points a bot at the parametrised backend (a private Redis for redis and cluster)."""
    if backend == "memory":
        yield {"SUPPORTBOT_MEMORY__STORE_URL": "memory://"}
    elif backend == "sqlite":
        yield {"SUPPORTBOT_MEMORY__STORE_URL": f"sqlite:///{tmp_path}/supportbot.db"}
    else:
        yield {"REDIS_URL": request.getfixturevalue({"redis": "redis_url", "cluster": "cluster_url"}[backend])}


def bot_settings(fake: FakeOpenAI, webhook: FakeTicketWebhook, store_env: dict[str, str], **env: str) -> Settings:
    return settings_for(
        fake.base_url,
        SUPPORTBOT_TICKET_WEBHOOK_URL=webhook.url,
        # A window of four messages: the summary folds every turn and earlier turns leave it for recall soon.
        SUPPORTBOT_MEMORY__WINDOW_MESSAGES="4",
        SUPPORTBOT_RATE_LIMIT__MESSAGES="0",
        **store_env,
        **env,
    )


def redis_nodes(backend: str, request: pytest.FixtureRequest) -> list[int]:
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return [server.port]
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return list(cluster.ports)


def read_by_type(client: redis.Redis, key: bytes) -> Any:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "set":
        return client.smembers(key)
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    assert kind == "stream", f"a key of a type the scan cannot read: {kind}"
    return client.xrange(key)


def redis_keyspace(ports: list[int]) -> dict[str, bytes]:
    """Every key on every node, with everything it holds (read by type, plus its DUMP) as one blob."""
    keyspace: dict[str, bytes] = {}
    for port in ports:
        client = redis.Redis(port=port)
        try:
            for raw_key in client.scan_iter(count=1000):
                key = raw_key.decode()
                value: Any = read_by_type(client, raw_key)
                keyspace[key] = raw_key + repr(value).encode() + (client.dump(raw_key) or b"")
        finally:
            client.close()
    return keyspace


def sqlite_files(path: Path) -> dict[str, bytes]:
    """The database file, its write-ahead log and its shared-memory index, as they are on disk now."""
    files = {}
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            files[part.name] = part.read_bytes()
    return files


def found(blobs: dict[str, bytes], words: tuple[str, ...]) -> dict[str, list[str]]:
    """Which of ``words`` appear in clear, and where."""
    hits = {word: [name for name, blob in blobs.items() if word.encode() in blob] for word in words}
    return {word: where for word, where in hits.items() if where}


def at_rest(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, bytes]:
    if backend == "sqlite":
        return sqlite_files(tmp_path / "supportbot.db")
    return redis_keyspace(redis_nodes(backend, request))


async def talk(bot: SupportBot, texts: tuple[str, ...]) -> None:
    for text in texts:
        reply = await bot.handle(message(text))
        assert reply is not None and reply.kind is ReplyKind.ANSWER, reply
        await settle(bot)


@pytest.mark.parametrize("backend", ["sqlite", "redis", "cluster"])
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "in-clear"])
async def test_with_a_key_nothing_a_user_wrote_is_stored_in_clear(
    backend: str,
    encrypted: bool,
    store_env: dict[str, str],
    webhook: FakeTicketWebhook,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    from cryptography.fernet import Fernet

    conversation = Conversation()
    key_env = {"SUPPORTBOT_ENCRYPTION_KEY": Fernet.generate_key().decode()} if encrypted else {}
    async with FakeOpenAI(responder=conversation.respond) as fake:
        bot = build_bot(bot_settings(fake, webhook, store_env, **key_env))
        try:
            await talk(bot, CONVERSATION)
            session = bot.session_key(message("x"))
            record = await bot.store.get(session)
            audit = await bot.store.audit(session)
            recalled = await bot.store.recall_items(session)
            stored = sqlite_files(tmp_path / "supportbot.db") if backend == "sqlite" else {}
        finally:
            await bot.aclose()
            await bot.store.aclose()

    # Every path planted its word, and the store gives it back.
    assert record is not None and record.summary is not None
    assert SUMMARISED in record.summary and SAID in record.summary, "the summary copies what the user wrote"
    assert EXTRACTED in record.entities["location"].value
    (ticket,) = [entry for entry in audit if entry.tool == "create_ticket"]
    assert TICKET_ADDRESS in ticket.arguments["details"] and ticket.outcome == "ok"
    assert any(SAID in item.text for item in recalled)

    rest = at_rest(backend, request, tmp_path)
    rest.update({f"open:{name}": blob for name, blob in stored.items()})  # the files while the store was open
    assert rest, "the scan read something"
    if encrypted:
        assert found(rest, PLANTED) == {}
    else:
        # The same scan finds every planted word when no key is set: it can see what it is looking for.
        assert set(found(rest, PLANTED)) == set(PLANTED)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis", "cluster"])
async def test_an_erasure_during_a_turn_fences_it_out_and_nothing_comes_back(
    backend: str, store_env: dict[str, str], webhook: FakeTicketWebhook, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    new_message = "Please open a ticket, my Axolotl9 dock is dead"
    conversation = Conversation()
    async with FakeOpenAI(responder=conversation.respond) as fake:
        settings = bot_settings(fake, webhook, store_env)
        bot = build_bot(settings)
        # `erase-user` runs in another process, with a store of its own (the in-process store has no other).
        eraser = bot.store if backend == "memory" else build_store(settings)
        session = bot.session_key(message("x"))
        try:
            await talk(bot, CONVERSATION[:3])

            # A reply is saved and its upkeep starts: the summary fold and the entity extraction are held...
            conversation.holding = {"fold", "extract"}
            await bot.handle(message(f"{SAID} again: Marmoset Tower office has no Wi-Fi"))
            await conversation.arrived["fold"].wait()
            await conversation.arrived["extract"].wait()
            # ...and the next turn is held in its model call, its message not saved yet.
            conversation.holding.add("chat")
            running = asyncio.create_task(bot.handle(message(new_message, event_id="in-flight")))
            await conversation.arrived["chat"].wait()

            assert await erase_user(eraser, "slack", "U1") == 1
            conversation.release.set()  # the turn files a ticket, answers and saves; the fold and extraction save
            reply = await running
            await settle(bot)

            assert reply is not None and reply.kind is ReplyKind.NOTICE and reply.text == ERASED_REPLY
            assert len(webhook.posts) == 2, "the ticket asked for before the erasure was filed all the same"
            assert await bot.store.get(session) is None
            assert await bot.store.audit(session) == [] and await bot.store.recall_items(session) == []
            assert await bot.store.sessions_of_user("slack", "U1") == []
            await nothing_left(backend, bot.store, session, request, tmp_path, (*PLANTED, "Axolotl9"))

            # The platform redelivers the message: already settled, nothing is stored and nobody is answered.
            assert await bot.handle(message(new_message, event_id="in-flight")) is None
            # The user writes again: a new, empty conversation, where the erased one never comes back.
            conversation.holding = set()
            again = await bot.handle(message("Hello, is anyone there?"))
            assert again is not None and again.kind is ReplyKind.ANSWER
            await settle(bot)
            prompt = next(r.prompt_text() for r in reversed(fake.requests) if r.tools)  # the reply's, not upkeep's
            record = await bot.store.get(session)
            assert record is not None and [m.content for m in record.messages] == [
                "Hello, is anyone there?",
                "Noted: Hello, is anyone there?",
            ]
            assert record.entities == {} and not any(w in (record.summary or "") for w in PLANTED)
            assert not any(w in prompt for w in (*PLANTED, "Axolotl9"))
        finally:
            conversation.release.set()
            await bot.aclose()
            if eraser is not bot.store:
                await eraser.aclose()
            await bot.store.aclose()


async def nothing_left(
    backend: str,
    store: SessionStore,
    session: SessionKey,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    words: tuple[str, ...],
) -> None:
    """Neither a row nor a key of the erased session is left but its tombstone, and no planted word anywhere."""
    if backend == "memory":
        assert isinstance(store, MemoryStore) and session.id not in store._sessions
        return
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "supportbot.db") as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = {
                table: db.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", (session.id,)).fetchone()[0]
                for table in tables
                for column in ("session_id", "id")
                if column in [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
            }
        assert {t: n for t, n in rows.items() if n} == {"erased": 1}
    else:
        keys = [k for k in redis_keyspace(redis_nodes(backend, request)) if session.id in k or "U1" in k]
        assert keys == [session.store_key("erased")]
    assert found(at_rest(backend, request, tmp_path), words) == {}, "the store was open all along"


async def test_an_erasure_leaves_nothing_in_the_sqlite_files_while_serve_keeps_them_open(tmp_path: Path) -> None:
    path = tmp_path / "supportbot.db"
    serving = SqliteStore(str(path), limits=StoreLimits(max_messages=10))
    cli = SqliteStore(str(path))
    key = SessionKey("slack", "T1", "D1", None, "U1")
    try:
        for n in range(40):  # enough to spread over several pages, some of them moved by trimming
            start = await serving.begin_turn(key, event_id=f"e{n}", window=10)
            assert start.lease is not None
            said = f"turn {n}: my home is 17 Quokka Lane, {TICKET_ADDRESS} " + "x" * 300
            await serving.commit_turn(start.lease, (StoredMessage("user", said, n, user="U1"),), platform="slack")
        await serving.save_summary(key, summary=f"lives in {TICKET_ADDRESS}", after=0, upto=1)
        before = found(sqlite_files(path), (TICKET_ADDRESS,))
        assert before and "supportbot.db-wal" in before[TICKET_ADDRESS], "the scan sees the log while it is open"

        assert await erase_user(cli, "slack", "U1") == 1
        assert found(sqlite_files(path), (TICKET_ADDRESS,)) == {}, "neither the file, nor its log, nor the index"
        await cli.aclose()  # the serving connection stays open, as under `serve`, and goes on working
        start = await serving.begin_turn(key, event_id="after", window=10)
        assert start.context is not None and start.context.messages == () and start.lease is not None
        await serving.commit_turn(start.lease, (StoredMessage("user", "hello", 1.0, user="U1"),), platform="slack")
        assert found(sqlite_files(path), (TICKET_ADDRESS,)) == {}
    finally:
        await cli.aclose()
        await serving.aclose()
