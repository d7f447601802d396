"""Core overhead of Supportbot against the seed design, on a private redis-server, with an instant model.

Run ``python bench/core_bench.py --plot docs/bench_core.png --json docs/bench_core.json`` (``make bench``), or
add ``--quick`` for a smoke run of well under a minute. See ``docs/benchmarks.md`` for what is measured and how.

Both designs talk to the same private ``redis-server`` (started here on a free port, in a temp dir, without
persistence, and stopped at the end; the shared server on 6379 is never touched) and to the same in-process
chat model that answers "ok, noted" at once, so every millisecond measured is the design's own overhead:
session lookup, history I/O, prompt building, LangChain plumbing and saving the turn.

* **Supportbot**: ``bot.core.SupportBot`` on ``bot.memory.redis.RedisStore`` with a 20-message window.
* **Seed design**: ``ConversationChain(llm, memory=ConversationBufferMemory(chat_memory=RedisChatMessageHistory))``
  from the seed document, driven with ``chain.predict(input=...)`` as the seed does. One chain (and so one redis
  client) is built per session and reused for every turn, which is kinder to it than the seed's FastAPI handler
  (a new client per request); that variant is timed separately, for information only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.connection as sync_connection
from langchain_core._api.deprecation import LangChainDeprecationWarning, LangChainPendingDeprecationWarning
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, message_to_dict
from langchain_core.outputs import ChatGeneration, ChatResult
from redis.asyncio.connection import Connection, ConnectionPool

# The private redis-server helper is shared with the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bot import core as bot_core
from bot.core import CoreOptions, SupportBot
from bot.memory.base import ClaimStatus, StoreLimits
from bot.memory.redis import RedisStore
from bot.messages import IncomingMessage, ReplyKind, StoredMessage
from bot.session import SessionKey
from bot.strategies import WindowStrategy
from tests.redis_server import RedisServer

# The seed design is built from deprecated LangChain classes; their warnings are expected here and nowhere else.
warnings.filterwarnings("ignore", category=LangChainDeprecationWarning)
warnings.filterwarnings("ignore", category=LangChainPendingDeprecationWarning)
warnings.filterwarnings("ignore", message=r".*langchain-community.*", category=DeprecationWarning)

HISTORIES = (10, 100, 1_000, 10_000)
PACKAGES = ("redis", "langchain-core", "langchain-classic", "langchain-community")  # versions recorded in the JSON
CONCURRENCY = (1, 100, 1_000)
SEED_SESSIONS = 100  # the seed design's throughput is measured over this many sessions
SEED_THREADS = 40  # anyio's default thread limiter: what a sync FastAPI endpoint (the seed's) runs on
THROUGHPUT_HISTORY = 10  # the short fixed history of the throughput sessions
SYSTEM_PROMPT = "You are a helpdesk bot."
REPLY_TEXT = "ok, noted"
USER_TEXT = "My VPN drops every few minutes when I am on the office wifi. What should I check first?"
HISTORY_USER = "Outlook keeps asking for my password after the update (#{n}). Can you help me with that?"
HISTORY_ASSISTANT = "Try removing the saved credential in Credential Manager, then restart Outlook (#{n})."


@dataclass(frozen=True)
class Plan:
    """How much work each phase does."""

    turns: int  # timed turns per design per history length
    warmup: int  # untimed turns per session before timing
    counted: int  # turns per design per history length bracketed by INFO for commands and bytes
    rounds: dict[int, int]  # throughput rounds per concurrency level (Supportbot)
    seed_rounds: int  # throughput rounds of the seed design over SEED_SESSIONS sessions (each way)
    as_written_turns: int  # turns of the seed "as written" (new client per request), informational
    breakdown: int  # repetitions of each step in the per-step breakdown at history 1,000


FULL = Plan(
    turns=300,
    warmup=10,
    counted=20,
    rounds={1: 300, 100: 20, 1_000: 5},
    seed_rounds=10,
    as_written_turns=50,
    breakdown=300,
)
QUICK = Plan(
    turns=20, warmup=3, counted=4, rounds={1: 30, 100: 2, 1_000: 1}, seed_rounds=2, as_written_turns=5, breakdown=30
)


# --------------------------------------------------------------------------------------------------- fixtures


class InstantModel(BaseChatModel):
    """A chat model that answers ``REPLY_TEXT`` immediately: no network, no sleep."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REPLY_TEXT))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REPLY_TEXT))])


class CountingConnection(Connection):
    """redis-py's asyncio connection, counting sends: one send is one round trip."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


class CountingSyncConnection(sync_connection.Connection):
    """redis-py's blocking connection (the seed's), counting sends the same way."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Snapshot:
    """Server-side counters read with one ``INFO stats commandstats``."""

    calls: dict[str, int]
    out_bytes: int
    in_bytes: int
    reply_size: int  # bytes of this INFO reply on the wire: counted in the next snapshot's out_bytes


class Admin:
    """A plain blocking client for setup, trimming and INFO; its traffic is never attributed to a turn."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.client.set_response_callback("INFO", lambda response, **options: response)

    def snapshot(self) -> Snapshot:
        raw: bytes = self.client.execute_command("INFO", "stats", "commandstats")  # type: ignore[no-untyped-call]
        calls: dict[str, int] = {}
        stats: dict[str, str] = {}
        for line in raw.decode().splitlines():
            name, sep, value = line.partition(":")
            if not sep:
                continue
            if name.startswith("cmdstat_"):
                fields = dict(item.split("=", 1) for item in value.split(","))
                calls[name.removeprefix("cmdstat_")] = int(fields["calls"])
            else:
                stats[name] = value
        wire = len(f"${len(raw)}\r\n") + len(raw) + 2  # RESP2 bulk string
        return Snapshot(calls, int(stats["total_net_output_bytes"]), int(stats["total_net_input_bytes"]), wire)

    def close(self) -> None:
        self.client.close()


@dataclass
class Traffic:
    """What one turn cost on the wire and on the server."""

    round_trips: int
    commands: int
    bytes_read: int
    bytes_written: int
    by_command: dict[str, int]


def traffic_between(before: Snapshot, after: Snapshot, round_trips: int, info_request: int) -> Traffic:
    """Counters of the work between two snapshots, less the first INFO's own request, reply and call."""
    by_command = {
        name: after.calls.get(name, 0) - before.calls.get(name, 0)
        for name in after.calls
        if name != "info" and after.calls.get(name, 0) != before.calls.get(name, 0)
    }
    return Traffic(
        round_trips=round_trips,
        commands=sum(by_command.values()),
        bytes_read=after.out_bytes - before.out_bytes - before.reply_size,
        bytes_written=after.in_bytes - before.in_bytes - info_request,
        by_command=by_command,
    )


INFO_REQUEST = len(b"*3\r\n$4\r\nINFO\r\n$5\r\nstats\r\n$12\r\ncommandstats\r\n")


# --------------------------------------------------------------------------------------------------- designs


def seed_classes() -> tuple[Any, Any, Any]:
    """The seed's LangChain classes, imported without their deprecation noise.

    ``langchain_classic`` re-enables its deprecation warnings when imported; ``catch_warnings`` undoes that on exit,
    so the module-level filters above stay in force (in this benchmark only).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        from langchain_classic.chains import ConversationChain
        from langchain_classic.memory import ConversationBufferMemory
        from langchain_community.chat_message_histories import RedisChatMessageHistory
    return ConversationChain, ConversationBufferMemory, RedisChatMessageHistory


_event_ids = iter(range(1, 1 << 62))


def incoming(channel: str, text: str = USER_TEXT) -> IncomingMessage:
    return IncomingMessage(
        platform="bench", workspace=None, channel=channel, thread=None, user="u", text=text, event_id=uuid.uuid4().hex
    )


def history_pairs(length: int) -> Iterator[tuple[str, str]]:
    """``length`` messages of history, oldest first, as (role, text)."""
    for n in range(length):
        role = "user" if n % 2 == 0 else "assistant"
        yield role, (HISTORY_USER if role == "user" else HISTORY_ASSISTANT).format(n=n // 2)


class SupportbotSide:
    """One SupportBot on one RedisStore whose connections count their round trips."""

    def __init__(self, url: str) -> None:
        self.counter: type[CountingConnection] = type("SupportbotConnection", (CountingConnection,), {"sends": 0})
        # redis-py 8's asyncio pool refuses (MaxConnectionsError) past 100 connections by default; 1,000 concurrent
        # turns need one connection each, so the pool is sized for them.
        pool = ConnectionPool.from_url(
            url, connection_class=self.counter, decode_responses=True, max_connections=max(CONCURRENCY) + 100
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.store = RedisStore(self.client, limits=StoreLimits(max_messages=25_000))
        self.bot = SupportBot(
            store=self.store,
            model=InstantModel(),
            options=CoreOptions(system_prompt=SYSTEM_PROMPT),
            strategy=WindowStrategy(k=20, max_tokens=3000),
        )
        self._sessions = 0

    def new_session(self) -> str:
        self._sessions += 1
        return f"s{self._sessions}"

    def key(self, channel: str) -> SessionKey:
        return self.bot.session_key(incoming(channel))

    async def populate(self, channel: str, length: int, batch: int = 500) -> None:
        """Give the session ``length`` messages through the store's own begin/commit, ``batch`` at a time."""
        key = self.key(channel)
        pairs = list(history_pairs(length))
        for start in range(0, length, batch):
            event_id = f"populate-{next(_event_ids)}"
            begun = await self.store.begin_turn(key, event_id=event_id, window=0)
            assert begun.status is ClaimStatus.ACQUIRED and begun.lease is not None
            chunk = pairs[start : start + batch]
            now = time.time()
            messages = tuple(
                StoredMessage(role, text, now, user="u" if role == "user" else None)  # type: ignore[arg-type]
                for role, text in chunk
            )
            await self.store.commit_turn(begun.lease, messages, platform="bench")

    def trim(self, admin: Admin, channel: str, length: int) -> None:
        """Cut the session back to its last ``length`` messages, so every timed turn sees the same history."""
        admin.client.ltrim(self.key(channel).store_key("msgs"), -length, -1)

    async def turn(self, channel: str) -> None:
        await self.handle(incoming(channel))

    async def handle(self, msg: IncomingMessage) -> None:
        reply = await self.bot.handle(msg)
        if reply is None or reply.kind is not ReplyKind.ANSWER or reply.text != REPLY_TEXT:
            raise RuntimeError(f"Supportbot turn did not answer: {reply!r}")

    async def aclose(self) -> None:
        await self.bot.aclose()
        await self.store.aclose()


class SeedSide:
    """The seed design: a ConversationChain over ConversationBufferMemory over RedisChatMessageHistory."""

    prefix = "message_store:"  # RedisChatMessageHistory's default key prefix

    def __init__(self, url: str, model: BaseChatModel) -> None:
        self.url = url
        self.model = model
        self.counter: type[CountingSyncConnection] = type("SeedConnection", (CountingSyncConnection,), {"sends": 0})
        self.chains: dict[str, Any] = {}
        self._sessions = 0

    def new_session(self) -> str:
        self._sessions += 1
        session_id = f"seed-{self._sessions}"
        self.chains[session_id] = self.build(session_id, counted=True)
        return session_id

    def build(self, session_id: str, *, counted: bool) -> Any:
        """``get_conversation(session_id)`` of the seed; ``counted`` swaps in an equivalent counting client."""
        ConversationChain, ConversationBufferMemory, RedisChatMessageHistory = seed_classes()
        history = RedisChatMessageHistory(session_id=session_id, url=self.url)
        if counted:
            history.redis_client.close()
            pool = redis.ConnectionPool.from_url(self.url, connection_class=self.counter)
            history.redis_client = redis.Redis(connection_pool=pool)
        return ConversationChain(llm=self.model, memory=ConversationBufferMemory(chat_memory=history))

    def populate(self, admin: Admin, session_id: str, length: int, batch: int = 1_000) -> None:
        """``length`` messages in the seed's own format (``LPUSH`` of ``message_to_dict`` JSON, newest first)."""
        encoded = [
            json.dumps(message_to_dict(HumanMessage(content=text) if role == "user" else AIMessage(content=text)))
            for role, text in history_pairs(length)
        ]
        for start in range(0, length, batch):
            admin.client.lpush(self.prefix + session_id, *encoded[start : start + batch])

    def trim(self, admin: Admin, session_id: str, length: int) -> None:
        admin.client.ltrim(self.prefix + session_id, 0, length - 1)

    def turn(self, session_id: str) -> None:
        answer = self.chains[session_id].predict(input=USER_TEXT)
        if answer != REPLY_TEXT:
            raise RuntimeError(f"seed turn did not answer: {answer!r}")

    def turn_as_written(self, session_id: str) -> float:
        """One turn the way the seed's FastAPI handler does it: build memory and chain, then predict. Seconds."""
        started = time.perf_counter()
        chain = self.build(session_id, counted=False)
        answer = chain.predict(input=USER_TEXT)
        elapsed = time.perf_counter() - started
        chain.memory.chat_memory.redis_client.close()
        if answer != REPLY_TEXT:
            raise RuntimeError(f"seed turn did not answer: {answer!r}")
        return elapsed

    def close(self) -> None:
        for chain in self.chains.values():
            chain.memory.chat_memory.redis_client.close()


# --------------------------------------------------------------------------------------------------- phases


def summary_ms(samples: Sequence[float]) -> dict[str, float | int]:
    """p50 / p99 (nearest rank) / mean of durations in seconds, as milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 4),
        "p99_ms": round(p99 * 1000, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 4),
        "n": len(ordered),
    }


def mean_traffic(samples: Sequence[Traffic]) -> dict[str, Any]:
    names = sorted({name for t in samples for name in t.by_command})
    return {
        "round_trips": statistics.fmean(t.round_trips for t in samples),
        "round_trips_max": max(t.round_trips for t in samples),
        "commands": statistics.fmean(t.commands for t in samples),
        "bytes_read": statistics.fmean(t.bytes_read for t in samples),
        "bytes_written": statistics.fmean(t.bytes_written for t in samples),
        "commands_by_name": {n: statistics.fmean(t.by_command.get(n, 0) for t in samples) for n in names},
        "n": len(samples),
    }


@dataclass
class Sessions:
    """The per-history sessions of both designs."""

    supportbot: dict[int, str] = field(default_factory=dict)
    seed: dict[int, str] = field(default_factory=dict)


async def setup_histories(sb: SupportbotSide, seed: SeedSide, admin: Admin, plan: Plan) -> Sessions:
    sessions = Sessions()
    for length in HISTORIES:
        channel = sb.new_session()
        await sb.populate(channel, length)
        session_id = seed.new_session()
        seed.populate(admin, session_id, length)
        for _ in range(plan.warmup):
            await sb.turn(channel)
            sb.trim(admin, channel, length)
            seed.turn(session_id)
            seed.trim(admin, session_id, length)
        assert admin.client.llen(sb.key(channel).store_key("msgs")) == length
        assert admin.client.llen(seed.prefix + session_id) == length
        sessions.supportbot[length] = channel
        sessions.seed[length] = session_id
    return sessions


async def measure_traffic(
    sb: SupportbotSide, seed: SeedSide, admin: Admin, sessions: Sessions, plan: Plan
) -> dict[int, dict[str, Any]]:
    """Commands, round trips and bytes of single turns, each bracketed by INFO, history restored after each."""
    result: dict[int, dict[str, Any]] = {}
    for length in HISTORIES:
        sb_samples: list[Traffic] = []
        seed_samples: list[Traffic] = []
        for _ in range(plan.counted):
            before, sends = admin.snapshot(), sb.counter.sends
            await sb.turn(sessions.supportbot[length])
            after = admin.snapshot()
            sb_samples.append(traffic_between(before, after, sb.counter.sends - sends, INFO_REQUEST))
            sb.trim(admin, sessions.supportbot[length], length)

            before, sends = admin.snapshot(), seed.counter.sends
            seed.turn(sessions.seed[length])
            after = admin.snapshot()
            seed_samples.append(traffic_between(before, after, seed.counter.sends - sends, INFO_REQUEST))
            seed.trim(admin, sessions.seed[length], length)
        result[length] = {"supportbot": mean_traffic(sb_samples), "seed": mean_traffic(seed_samples)}
    return result


async def measure_latency(
    sb: SupportbotSide, seed: SeedSide, admin: Admin, sessions: Sessions, plan: Plan, progress: Callable[[str], None]
) -> dict[int, dict[str, Any]]:
    """Per-turn wall time. Every iteration visits all (design, history) pairs in a fresh random order."""
    rng = random.Random(1234)
    samples: dict[tuple[str, int], list[float]] = {(d, h): [] for d in ("supportbot", "seed") for h in HISTORIES}
    jobs = list(samples)
    for i in range(plan.turns):
        rng.shuffle(jobs)
        for design, length in jobs:
            if design == "supportbot":
                channel = sessions.supportbot[length]
                msg = incoming(channel)
                started = time.perf_counter()
                await sb.handle(msg)
                samples[design, length].append(time.perf_counter() - started)
                sb.trim(admin, channel, length)
            else:
                session_id = sessions.seed[length]
                started = time.perf_counter()
                seed.turn(session_id)
                samples[design, length].append(time.perf_counter() - started)
                seed.trim(admin, session_id, length)
        if (i + 1) % max(1, plan.turns // 4) == 0:
            progress(f"  latency: {i + 1}/{plan.turns} iterations")
    result: dict[int, dict[str, Any]] = {}
    for length in HISTORIES:
        sb_stats = summary_ms(samples["supportbot", length])
        seed_stats = summary_ms(samples["seed", length])
        result[length] = {
            "supportbot": sb_stats,
            "seed": seed_stats,
            "ratio_p50": round(seed_stats["p50_ms"] / sb_stats["p50_ms"], 2),
            "ratio_p99": round(seed_stats["p99_ms"] / sb_stats["p99_ms"], 2),
        }
    return result


class StepClock:
    """Time spent in named steps, summed per turn, kept per turn."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.turns: dict[str, list[float]] = {}

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` (sync, or returning an awaitable) with its time added to step ``name``."""

        if asyncio.iscoroutinefunction(fn) or hasattr(fn, "script"):  # redis-py's Script returns a coroutine

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - started

            return wrapper

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - started

        return sync_wrapper

    def end_turn(self, whole: float) -> None:
        self.turns.setdefault("whole", []).append(whole)
        for name, seconds in self.current.items():
            self.turns.setdefault(name, []).append(seconds)
        self.current = {}

    def p50(self, name: str) -> float:
        return round(statistics.median(self.turns[name]) * 1000, 4)


class ModelClock:
    """Stands in for the bot's model, timing each ``ainvoke`` of the real one."""

    def __init__(self, model: BaseChatModel, clock: StepClock) -> None:
        self.ainvoke = clock.timed("model", model.ainvoke)


class RedisClock:
    """Stands in for the seed's redis client, timing the commands RedisChatMessageHistory sends."""

    def __init__(self, client: redis.Redis, clock: StepClock) -> None:
        self.lrange = clock.timed("lrange", client.lrange)
        self.lpush = clock.timed("lpush", client.lpush)
        self.expire = clock.timed("expire", client.expire)


async def breakdown_supportbot(sb: SupportbotSide, admin: Admin, channel: str, length: int, reps: int) -> StepClock:
    """Real turns of a second SupportBot on the same client, its store, scripts, model and prompt builder timed."""
    clock = StepClock()
    store = RedisStore(sb.client, limits=sb.store.limits)
    store._begin = clock.timed("begin_evalsha", store._begin)  # type: ignore[assignment]
    store.begin_turn = clock.timed("begin_turn", store.begin_turn)  # type: ignore[method-assign]
    store.commit_turn = clock.timed("commit_turn", store.commit_turn)  # type: ignore[method-assign]
    timed_bot = SupportBot(store=store, model=sb.bot.model, options=sb.bot.options, strategy=sb.bot.strategy)
    timed_bot.model = cast(BaseChatModel, ModelClock(sb.bot.model, clock))
    original = bot_core.build_prompt  # type: ignore[attr-defined]
    bot_core.build_prompt = clock.timed("build_prompt", original)  # type: ignore[attr-defined]
    try:
        for _ in range(reps):
            msg = incoming(channel)
            started = time.perf_counter()
            reply = await timed_bot.handle(msg)
            clock.end_turn(time.perf_counter() - started)
            assert reply is not None and reply.kind is ReplyKind.ANSWER
            sb.trim(admin, channel, length)
            started = time.perf_counter()
            await sb.client.ping()
            clock.turns.setdefault("ping", []).append(time.perf_counter() - started)
    finally:
        bot_core.build_prompt = original  # type: ignore[attr-defined]
    steps = ("begin_turn", "build_prompt", "model", "commit_turn")
    clock.turns["rest"] = [
        whole - sum(clock.turns[s][i] for s in steps) for i, whole in enumerate(clock.turns["whole"])
    ]
    clock.turns["begin_turn_python"] = [
        a - b for a, b in zip(clock.turns["begin_turn"], clock.turns["begin_evalsha"], strict=True)
    ]
    return clock


def breakdown_seed(seed: SeedSide, admin: Admin, session_id: str, length: int, reps: int) -> StepClock:
    """Real ``chain.predict`` turns with the history's redis client timed; the rest is LangChain and decoding."""
    clock = StepClock()
    history = seed.chains[session_id].memory.chat_memory
    client = history.redis_client
    history.redis_client = RedisClock(client, clock)
    try:
        for _ in range(reps):
            started = time.perf_counter()
            seed.turn(session_id)
            clock.end_turn(time.perf_counter() - started)
            seed.trim(admin, session_id, length)
            started = time.perf_counter()
            client.ping()
            clock.turns.setdefault("ping", []).append(time.perf_counter() - started)
    finally:
        history.redis_client = client
    clock.turns["rest"] = [
        whole - clock.turns["lrange"][i] - clock.turns["lpush"][i] for i, whole in enumerate(clock.turns["whole"])
    ]
    return clock


async def measure_breakdown(
    sb: SupportbotSide, seed: SeedSide, admin: Admin, sessions: Sessions, plan: Plan
) -> dict[str, dict[str, float]]:
    """Where a turn's time goes at history 1,000: p50 per step of real turns, in ms (informational).

    Medians of the parts need not add up exactly to the median of the whole.
    """
    length = 1_000
    sbc = await breakdown_supportbot(sb, admin, sessions.supportbot[length], length, plan.breakdown)
    sdc = breakdown_seed(seed, admin, sessions.seed[length], length, plan.breakdown)
    return {
        "supportbot": {
            "whole turn (SupportBot.handle)": sbc.p50("whole"),
            "begin_turn: EVALSHA in redis-py (1 round trip, reply parsed)": sbc.p50("begin_evalsha"),
            "begin_turn: the rest (keys, args, 20 x StoredMessage.from_json)": sbc.p50("begin_turn_python"),
            "build_prompt (20 LangChain messages + trim_messages)": sbc.p50("build_prompt"),
            "model.ainvoke (instant model: LangChain plumbing only)": sbc.p50("model"),
            "commit_turn (1 round trip: one script, user index included)": sbc.p50("commit_turn"),
            "rest of the turn (task, shield, lock, text, messages, reply)": sbc.p50("rest"),
            "for scale: a bare PING on the same asyncio client": sbc.p50("ping"),
        },
        "seed": {
            "whole turn (ConversationChain.predict)": sdc.p50("whole"),
            "LRANGE 0 -1 in redis-py (1 round trip, 1,000 items parsed)": sdc.p50("lrange"),
            "2 x LPUSH in redis-py (2 round trips)": sdc.p50("lpush"),
            "rest (JSON decode, message objects, buffer string, chain + model)": sdc.p50("rest"),
            "for scale: a bare PING on the same sync client": sdc.p50("ping"),
        },
    }


def measure_as_written(seed: SeedSide, admin: Admin, plan: Plan) -> dict[int, dict[str, Any]]:
    """The seed's handler as written (a new redis client and chain per request), at two history lengths."""
    result: dict[int, dict[str, Any]] = {}
    for length in (10, 1_000):
        session_id = f"seed-as-written-{length}"
        seed.populate(admin, session_id, length)
        samples = []
        for i in range(plan.warmup + plan.as_written_turns):
            elapsed = seed.turn_as_written(session_id)
            seed.trim(admin, session_id, length)
            if i >= plan.warmup:
                samples.append(elapsed)
        result[length] = summary_ms(samples)
    return result


class ThroughputRig:
    """Sessions with a short fixed history for the throughput rounds, cut back to it after every round."""

    def __init__(self, sb: SupportbotSide, seed: SeedSide, admin: Admin) -> None:
        self.sb, self.seed, self.admin = sb, seed, admin
        self.channels: dict[int, list[str]] = {}
        self.seed_ids: list[str] = []
        self.pool = ThreadPoolExecutor(max_workers=SEED_THREADS, thread_name_prefix="seed")

    async def setup(self) -> None:
        for n in CONCURRENCY:
            self.channels[n] = [self.sb.new_session() for _ in range(n)]
            await asyncio.gather(*(self.sb.populate(c, THROUGHPUT_HISTORY) for c in self.channels[n]))
        self.seed_ids = [self.seed.new_session() for _ in range(SEED_SESSIONS)]
        for session_id in self.seed_ids:
            self.seed.populate(self.admin, session_id, THROUGHPUT_HISTORY)

    def _trim(self, keys: list[str], start: int, stop: int) -> None:
        with self.admin.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.ltrim(key, start, stop)
            pipe.execute()

    async def sb_round(self, n: int) -> float:
        """One ``asyncio.gather`` of a turn in each of ``n`` sessions; seconds."""
        started = time.perf_counter()
        await asyncio.gather(*(self.sb.turn(c) for c in self.channels[n]))
        elapsed = time.perf_counter() - started
        self._trim([self.sb.key(c).store_key("msgs") for c in self.channels[n]], -THROUGHPUT_HISTORY, -1)
        return elapsed

    def seed_round(self, threaded: bool) -> float:
        """One turn in each seed session, one after another or on the thread pool; seconds."""
        started = time.perf_counter()
        if threaded:
            list(self.pool.map(self.seed.turn, self.seed_ids))
        else:
            for session_id in self.seed_ids:
                self.seed.turn(session_id)
        elapsed = time.perf_counter() - started
        self._trim([self.seed.prefix + s for s in self.seed_ids], 0, THROUGHPUT_HISTORY - 1)
        return elapsed

    def seed_round_as_written(self) -> float:
        """One turn in each seed session, sequentially, building client, memory and chain per request; seconds."""
        elapsed = sum(self.seed.turn_as_written(session_id) for session_id in self.seed_ids)
        self._trim([self.seed.prefix + s for s in self.seed_ids], 0, THROUGHPUT_HISTORY - 1)
        return elapsed

    def close(self) -> None:
        self.pool.shutdown()


def rate(rounds: list[float], sessions: int) -> dict[str, float | int]:
    return {
        "turns_per_s": round(sessions * len(rounds) / sum(rounds), 1),
        "turns": sessions * len(rounds),
        "seconds": round(sum(rounds), 3),
    }


async def measure_throughput(
    sb: SupportbotSide, seed: SeedSide, admin: Admin, plan: Plan, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Turns per second: Supportbot with N concurrent sessions; the seed over 100 sessions, sequential and threaded.

    Supportbot rounds are ``asyncio.gather`` of one turn per session. At 100 sessions, Supportbot rounds and both
    kinds of seed rounds alternate so that all three see the same machine. Histories are cut back to
    ``THROUGHPUT_HISTORY`` messages between rounds (untimed).
    """
    rig = ThroughputRig(sb, seed, admin)
    try:
        await rig.setup()
        # Warm-up: open every connection (Supportbot's pool grows to the concurrency; each seed session has a client).
        for n in CONCURRENCY:
            await rig.sb_round(n)
        rig.seed_round(False)
        rig.seed_round(True)

        sb_rounds: dict[int, list[float]] = {n: [] for n in CONCURRENCY}
        sequential: list[float] = []
        threaded: list[float] = []
        as_written: list[float] = []
        for _ in range(plan.rounds[1]):
            sb_rounds[1].append(await rig.sb_round(1))
        for i in range(max(plan.rounds[100], plan.seed_rounds)):
            sb_rounds[100].append(await rig.sb_round(100))
            if i < plan.seed_rounds:
                sequential.append(rig.seed_round(False))
                threaded.append(rig.seed_round(True))
                as_written.append(rig.seed_round_as_written())
        progress("  throughput: 1 and 100 sessions done")
        for _ in range(plan.rounds[1_000]):
            sb_rounds[1_000].append(await rig.sb_round(1_000))
    finally:
        rig.close()

    seed_seq, seed_thr = rate(sequential, SEED_SESSIONS), rate(threaded, SEED_SESSIONS)
    best = max(seed_seq["turns_per_s"], seed_thr["turns_per_s"])
    supportbot = {str(n): rate(sb_rounds[n], n) for n in CONCURRENCY}
    return {
        "history": THROUGHPUT_HISTORY,
        "supportbot": supportbot,
        "seed": {"sequential": seed_seq, f"threads_{SEED_THREADS}": seed_thr, "best_turns_per_s": best},
        "ratio_100": round(supportbot["100"]["turns_per_s"] / best, 2),
        "seed_as_written_sequential": rate(as_written, SEED_SESSIONS),
    }


# --------------------------------------------------------------------------------------------------- report


def target_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    lat = results["latency"]
    traffic = results["traffic"]
    thr = results["throughput"]
    sb_trips = [traffic[h]["supportbot"]["round_trips"] for h in HISTORIES]
    sb_trips_max = max(traffic[h]["supportbot"]["round_trips_max"] for h in HISTORIES)
    flat = lat[10_000]["supportbot"]["p50_ms"] / lat[10]["supportbot"]["p50_ms"]
    bytes_ratio = traffic[1_000]["seed"]["bytes_read"] / traffic[1_000]["supportbot"]["bytes_read"]
    return [
        {
            "target": "2 round trips per uncontended turn",
            "pass": all(t == 2 for t in sb_trips) and sb_trips_max == 2,
            "observed": f"{', '.join(f'{t:g}' for t in sb_trips)} at histories {', '.join(map(str, HISTORIES))}",
        },
        {
            "target": "per-turn overhead flat: p50 at 10,000 <= 1.2 x p50 at 10",
            "pass": flat <= 1.2,
            "observed": f"{lat[10_000]['supportbot']['p50_ms']:.3f} ms / {lat[10]['supportbot']['p50_ms']:.3f} ms"
            f" = {flat:.2f} x",
        },
        {
            "target": ">= 25 x faster per turn than the seed at history 1,000",
            "pass": lat[1_000]["ratio_p50"] >= 25,
            "observed": f"p50 ratio {lat[1_000]['ratio_p50']:.1f} x",
        },
        {
            "target": "never slower than the seed at history 10",
            "pass": lat[10]["ratio_p50"] >= 1.0,
            "observed": f"p50 ratio {lat[10]['ratio_p50']:.2f} x (p99 ratio {lat[10]['ratio_p99']:.2f} x)",
        },
        {
            "target": "<= 1/40 of the seed's bytes read per turn at history 1,000",
            "pass": bytes_ratio >= 40,
            "observed": f"{traffic[1_000]['supportbot']['bytes_read']:,.0f} B vs "
            f"{traffic[1_000]['seed']['bytes_read']:,.0f} B = 1/{bytes_ratio:.1f}",
        },
        {
            "target": ">= 2 x the seed's throughput over 100 concurrent sessions",
            "pass": thr["ratio_100"] >= 2,
            "observed": f"{thr['supportbot']['100']['turns_per_s']:,.0f} vs {thr['seed']['best_turns_per_s']:,.0f}"
            f" turns/s = {thr['ratio_100']:.1f} x",
        },
    ]


def render_table(results: dict[str, Any]) -> str:
    lat, traffic, thr = results["latency"], results["traffic"], results["throughput"]
    lines = [
        "Per turn (instant model; history = stored messages in the session)",
        "",
        f"{'history':>8} | {'Supportbot p50/p99 ms':>22} | {'seed p50/p99 ms':>19} | {'seed/SB p50':>11} | "
        f"{'RT SB/seed':>10} | {'cmds SB/seed':>12} | {'bytes read SB':>13} | {'bytes read seed':>15} | "
        f"{'bytes ratio':>11}",
        "-" * 151,
    ]
    for h in HISTORIES:
        sb, sd = lat[h]["supportbot"], lat[h]["seed"]
        tsb, tsd = traffic[h]["supportbot"], traffic[h]["seed"]
        lines.append(
            f"{h:>8,} | {sb['p50_ms']:>10.3f} / {sb['p99_ms']:>9.3f} | {sd['p50_ms']:>8.3f} / {sd['p99_ms']:>8.3f} | "
            f"{lat[h]['ratio_p50']:>10.2f}x | {tsb['round_trips']:>4g} / {tsd['round_trips']:<3g} | "
            f"{tsb['commands']:>5.1f} / {tsd['commands']:<4.1f} | {tsb['bytes_read']:>13,.0f} | "
            f"{tsd['bytes_read']:>15,.0f} | {tsd['bytes_read'] / tsb['bytes_read']:>10.1f}x"
        )
    lines += [
        "",
        "RT = round trips (sends on the client's connections); cmds = INFO commandstats calls, including the",
        "commands run inside Supportbot's two Lua scripts; bytes read = INFO total_net_output_bytes delta.",
        "",
        f"Throughput (history {thr['history']} messages per session)",
        "",
    ]
    for n in CONCURRENCY:
        r = thr["supportbot"][str(n)]
        lines.append(
            f"  Supportbot, {n:>5,} concurrent sessions: {r['turns_per_s']:>9,.0f} turns/s ({r['turns']} turns)"
        )
    seq, thread = thr["seed"]["sequential"], thr["seed"][f"threads_{SEED_THREADS}"]
    lines.append(f"  seed, {SEED_SESSIONS} sessions, sequential:       {seq['turns_per_s']:>9,.0f} turns/s")
    lines.append(
        f"  seed, {SEED_SESSIONS} sessions, {SEED_THREADS} threads:       {thread['turns_per_s']:>9,.0f} turns/s"
    )
    lines.append(f"  ratio at 100 sessions (Supportbot / best seed): {thr['ratio_100']:.2f} x")
    written_thr = thr["seed_as_written_sequential"]["turns_per_s"]
    lines.append(
        f"  seed as written (new client per request), {SEED_SESSIONS} sessions, sequential: {written_thr:,.0f} turns/s"
        f" (Supportbot at 100 sessions: {thr['supportbot']['100']['turns_per_s'] / written_thr:.2f} x)"
    )
    written = results["seed_as_written"]
    lines += [
        "",
        "Seed as written (new redis client + chain per request, as its FastAPI handler), for information:",
        *(
            f"  history {h:>5,}: p50 {written[h]['p50_ms']:.3f} ms, p99 {written[h]['p99_ms']:.3f} ms"
            f" (seed as written / Supportbot p50: {written[h]['p50_ms'] / lat[h]['supportbot']['p50_ms']:.2f} x)"
            for h in sorted(written)
        ),
        "",
        "Where the time goes at history 1,000 (steps timed inside real turns; p50 ms each)",
        "",
    ]
    for design, label in (("supportbot", "Supportbot"), ("seed", "seed")):
        lines.append(f"  {label}:")
        lines += [f"    {name:<68} {value:>8.3f}" for name, value in results["breakdown_1000"][design].items()]
    lines += ["", "Targets", ""]
    for check in results["targets"]:
        lines.append(f"  [{'PASS' if check['pass'] else 'FAIL'}] {check['target']}: {check['observed']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, traffic = results["latency"], results["traffic"]
    xs = list(HISTORIES)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for design, label, colour in (("supportbot", "Supportbot", "tab:blue"), ("seed", "seed design", "tab:red")):
        ax1.plot(xs, [lat[h][design]["p50_ms"] for h in xs], "o-", color=colour, label=f"{label} p50")
        ax1.plot(xs, [lat[h][design]["p99_ms"] for h in xs], "o--", color=colour, alpha=0.45, label=f"{label} p99")
        ax2.plot(xs, [traffic[h][design]["bytes_read"] for h in xs], "o-", color=colour, label=label)
    ax1.set_title("Core overhead per turn (instant model)")
    ax1.set_ylabel("ms per turn")
    ax2.set_title("Bytes read from Redis per turn")
    ax2.set_ylabel("bytes per turn")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("history length (messages)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": memory[1].split()[1] if len(memory) > 1 else "",
        "python": platform.python_version(),
        "redis_server": server,
        "packages": {name: version(name) for name in PACKAGES},
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------------------------------- main


async def run(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    server = RedisServer(Path(tempfile.mkdtemp(prefix="supportbot-bench-redis-")), appendonly=False)
    server.start()
    progress(f"private redis-server on {server.url}")
    admin = Admin(server.url)
    sb = SupportbotSide(server.url)
    seed = SeedSide(server.url, InstantModel())
    try:
        sessions = await setup_histories(sb, seed, admin, plan)
        gc.collect()
        gc.freeze()
        progress("histories ready; counting traffic")
        traffic = await measure_traffic(sb, seed, admin, sessions, plan)
        progress("timing turns")
        latency = await measure_latency(sb, seed, admin, sessions, plan, progress)
        progress("per-step breakdown")
        breakdown = await measure_breakdown(sb, seed, admin, sessions, plan)
        progress("timing the seed as written")
        as_written = measure_as_written(seed, admin, plan)
        progress("throughput")
        throughput = await measure_throughput(sb, seed, admin, plan, progress)
    finally:
        await sb.aclose()
        seed.close()
        admin.close()
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
    return {
        "latency": latency,
        "traffic": traffic,
        "throughput": throughput,
        "seed_as_written": as_written,
        "breakdown_1000": breakdown,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (well under a minute)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="write a PNG (ms and bytes per turn vs history) to this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.time()
    results = asyncio.run(run(plan, progress))
    results["targets"] = target_checks(results)
    results["meta"] = {
        "mode": "quick" if args.quick else "full",
        "plan": {k: v for k, v in plan.__dict__.items()},
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "seed_throughput": f"sequential and a {SEED_THREADS}-thread pool; the ratio uses the better of the two",
    }
    print(render_table(results))
    print(f"\n({results['meta']['mode']} run, {results['meta']['duration_s']} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
