"""Soak: two ``supportbot serve`` processes on one Redis under steady load from Slack events and the web API.

Each of N concurrent sessions (half Slack threads, half browser sessions) sends a message, waits for its reply
and sends the next, for the whole run. The model is the local fake OpenAI server answering at once, so what is
measured is Supportbot: its HTTP handling, the core, Redis, and Slack posting.

Reports throughput, end-to-end latency (p50/p99), errors, duplicate replies (must be 0), lost turns (must be
0; checked against Redis afterwards) and the servers' RSS growth (end ≤ 1.2 × after warm-up).

    .venv/bin/python bench/soak.py --seconds 120 --sessions 200 --json docs/soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp

# The fakes, the private redis-server and the fleet of serve processes are shared with the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bot.memory.redis import RedisStore
from bot.session import SessionKey
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack, SlackCall
from tests.fleet import Fleet, start_fleet, stop_fleet
from tests.redis_server import RedisServer

CHANNEL = "C0SOAK"
WARM_UP_SHARE = 0.15  # RSS is read once this share of the run has passed
RSS_GROWTH_LIMIT = 1.2


class SoakSlack(FakeSlack):
    """The fake Slack, telling each thread's waiter when a reply starts there."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: Counter[str] = Counter()
        self.waiters: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def _record(self, call: SlackCall) -> None:
        super()._record(call)
        if call.method == "chat.startStream":
            thread = str(call.args.get("thread_ts"))
            self.replies[thread] += 1
            self.waiters[thread].set()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else float("nan")


class Load:
    def __init__(self, fleet: Fleet, slack: SoakSlack, web: aiohttp.ClientSession, deadline: float) -> None:
        self.fleet, self.slack, self.web, self.deadline = fleet, slack, web, deadline
        self.latency: dict[str, list[float]] = {"slack": [], "web": []}
        self.errors: Counter[str] = Counter()
        self.sent: dict[str, int] = {}

    async def slack_session(self, index: int) -> None:
        thread = f"17{index:08d}.000100"
        self.sent[f"slack:{thread}"] = 0
        n = 0
        while time.monotonic() < self.deadline:
            ts = thread if n == 0 else f"17{index:08d}.{n + 100:06d}"
            event = {"type": "app_mention", "user": f"U{index}", "text": f"<@UBOT> q{n}", "ts": ts, "channel": CHANNEL}
            if n:
                event["thread_ts"] = thread
            waiter = self.slack.waiters[thread]
            waiter.clear()
            started = time.monotonic()
            try:
                status = await self.fleet.deliver((index + n) % len(self.fleet.urls), self.slack.event_payload(event))
            except aiohttp.ClientError as exc:
                self.errors[f"slack {type(exc).__name__}"] += 1
                continue
            if status != 200:
                self.errors[f"slack HTTP {status}"] += 1
                continue
            try:
                await asyncio.wait_for(waiter.wait(), 30)
            except TimeoutError:
                self.errors["slack no reply within 30 s"] += 1
                continue
            self.latency["slack"].append(time.monotonic() - started)
            n += 1
            self.sent[f"slack:{thread}"] = n

    async def web_session(self, index: int) -> None:
        session_id = f"soak-web-{index:05d}"
        self.sent[f"web:{session_id}"] = 0
        n = 0
        while time.monotonic() < self.deadline:
            url = self.fleet.urls[(index + n) % len(self.fleet.urls)]
            body = {"session_id": session_id, "message": f"q{n}", "message_id": f"{session_id}-{n}"}
            started = time.monotonic()
            try:
                async with self.web.post(f"{url}/api/chat", json=body) as response:
                    payload = await response.json()
                    status = response.status
            except aiohttp.ClientError as exc:
                self.errors[f"web {type(exc).__name__}"] += 1
                continue
            if status != 200 or payload.get("kind") != "answer":
                self.errors[f"web HTTP {status} {payload.get('kind') or payload.get('error')}"] += 1
                continue
            self.latency["web"].append(time.monotonic() - started)
            n += 1
            self.sent[f"web:{session_id}"] = n


async def lost_turns(redis_url: str, sent: dict[str, int], problems: list[str] | None = None) -> tuple[int, int]:
    """(lost or out-of-order user messages, duplicated ones) according to what Redis holds; each session that has
    either is described in ``problems`` when given."""
    store = RedisStore.from_url(redis_url)
    lost = duplicated = 0
    try:
        for name, count in sent.items():
            surface, ident = name.split(":", 1)
            if surface == "slack":
                user = f"U{int(ident[2:10])}"
                key = SessionKey("slack", "T1", CHANNEL, ident, user)
            else:
                key = SessionKey("web", None, ident, None, ident)
            record = await store.get(key)
            asked = [m.content for m in record.messages if m.role == "user"] if record else []
            expected = [f"q{n}" for n in range(count)]
            twice = max(0, len(asked) - len(set(asked)))
            # A message sent at the deadline may have been answered after the load stopped counting.
            missing = sum(1 for q in expected if q not in asked) + (asked[: len(expected)] != expected)
            duplicated += twice
            lost += missing
            if problems is not None and (twice or missing):
                problems.append(f"{name}: sent {count}, stored {asked}")
    finally:
        await store.aclose()
    return lost, duplicated


async def soak(seconds: float, sessions: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="supportbot-soak-"))
    redis = RedisServer(workdir / "redis", appendonly=False)
    redis.start()
    try:
        async with SoakSlack() as slack, FakeOpenAI() as model:
            fleet = await start_fleet(
                2,
                workdir,
                redis.url,
                slack,
                model,
                SUPPORTBOT_LOG__LEVEL="WARNING",
                SUPPORTBOT_MEMORY__MAX_MESSAGES="100000",
            )
            web = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            try:
                started = time.monotonic()
                load = Load(fleet, slack, web, started + seconds)
                workers = [load.slack_session(i) for i in range(sessions // 2)]
                workers += [load.web_session(i) for i in range(sessions - sessions // 2)]
                running = asyncio.gather(*workers)
                await asyncio.sleep(seconds * WARM_UP_SHARE)
                rss_warm = [rss_kib(p.pid) for p in fleet.procs]
                await running
                elapsed = time.monotonic() - started
                rss_end = [rss_kib(p.pid) for p in fleet.procs]
                await asyncio.sleep(1.0)  # a duplicate reply arriving late would be counted now
                slack_sent = {k.split(":", 1)[1]: v for k, v in load.sent.items() if k.startswith("slack:")}
                slack_duplicates = sum(max(0, slack.replies[t] - n) for t, n in slack_sent.items())
                lost, stored_duplicates = await lost_turns(redis.url, load.sent)
            finally:
                await web.close()
                await stop_fleet(fleet)
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    every = load.latency["slack"] + load.latency["web"]
    return {
        "seconds": round(elapsed, 1),
        "sessions": sessions,
        "processes": 2,
        "turns": len(every),
        "turns_per_s": round(len(every) / elapsed, 1),
        "latency_ms": {
            surface: {"p50": round(statistics.median(v) * 1000, 1), "p99": round(percentile(v, 0.99) * 1000, 1)}
            for surface, v in (("all", every), *load.latency.items())
            if v
        },
        "errors": dict(load.errors),
        "duplicates": slack_duplicates + stored_duplicates,
        "lost_turns": lost,
        "rss_kib_after_warm_up": rss_warm,
        "rss_kib_end": rss_end,
        "rss_growth": [round(end / warm, 3) for warm, end in zip(rss_warm, rss_end, strict=True)],
    }


def report(result: dict[str, Any]) -> bool:
    lat = result["latency_ms"]
    print(f"soak: {result['seconds']} s, {result['sessions']} sessions, {result['processes']} serve processes")
    print(f"  turns: {result['turns']:,} ({result['turns_per_s']:,} turns/s)")
    for surface, values in lat.items():
        print(f"  latency {surface:5}: p50 {values['p50']} ms, p99 {values['p99']} ms")
    print(f"  errors: {sum(result['errors'].values())} {result['errors'] or ''}")
    checks = [
        ("duplicates = 0", result["duplicates"] == 0, result["duplicates"]),
        ("lost turns = 0", result["lost_turns"] == 0, result["lost_turns"]),
        (
            f"RSS at the end <= {RSS_GROWTH_LIMIT} x after warm-up",
            all(g <= RSS_GROWTH_LIMIT for g in result["rss_growth"]),
            f"{result['rss_kib_after_warm_up']} -> {result['rss_kib_end']} KiB ({result['rss_growth']})",
        ),
    ]
    for name, ok, observed in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {observed}")
    return all(ok for _, ok, _ in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    result = asyncio.run(soak(args.seconds, args.sessions))
    ok = report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
