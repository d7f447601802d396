"""Chaos: four ``supportbot serve`` processes on one Redis, one of them killed with SIGKILL every few seconds, and
Redis itself restarted half-way, while Slack threads and web sessions keep talking to them.

Every Slack message is a signed Events API request; it counts as *acknowledged* when a process answered it 200,
and as *answered* when its reply appears in its thread of the local fake Slack. Web messages are resent with the
same ``message_id`` to another process until one answers. Before each kill, the inbox says which messages the
victim was holding; the time from the kill to each of their answers is the recovery time.

Reports acknowledged, answered, lost (must be 0), duplicates (must be 0) and the recovery time's p50/p99 (target
p99 <= 20 s), and checks every session's memory in Redis afterwards.

    .venv/bin/python bench/chaos.py --seconds 120 --sessions 200 --json docs/bench_chaos.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import lost_turns, percentile

from bot.inbox.redis import RedisInbox
from bot.memory.redis import redis_client
from tests.fakes.openai_server import FakeOpenAI, echo_responder
from tests.fakes.slack_server import FakeSlack, SlackCall
from tests.fleet import Fleet, start_fleet, stop_fleet
from tests.redis_server import RedisServer

CHANNEL = "C0SOAK"  # the soak's checks of what Redis holds name this channel
PROCESSES = 4
KILL_EVERY_S = 5.0
RESPAWN_AFTER_S = 1.0
ANSWER_GUARD_S = 120.0  # a message unanswered this long is counted lost
RECOVERY_TARGET_S = 20.0
LOG_LEVEL = "WARNING"


class ChaosSlack(FakeSlack):
    """The fake Slack, waking a thread's sender whenever the bot posts or starts a reply there."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def _record(self, call: SlackCall) -> None:
        super()._record(call)
        if call.method in ("chat.startStream", "chat.postMessage"):
            self.posted[str(call.args.get("thread_ts"))].set()

    def replies(self, thread: str) -> list[str]:
        return [m["text"] for m in self.messages(CHANNEL) if m.get("bot_id") and m.get("thread_ts") == thread]


class Chaos:
    def __init__(self, fleet: Fleet, slack: ChaosSlack, web: aiohttp.ClientSession, deadline: float) -> None:
        self.fleet, self.slack, self.web, self.deadline = fleet, slack, web, deadline
        self.sent: dict[str, int] = {}
        self.acked: dict[str, float] = {}  # event id -> when acknowledged
        self.answered: dict[str, float] = {}  # event id -> when its reply appeared
        self.orphans: dict[str, float] = {}  # event id -> when the process holding it was last killed
        self.first_orphaned: dict[str, float] = {}  # event id -> when it was first orphaned
        self.kills = 0
        self.redis_restarts = 0
        self.rng = random.Random(7)

    def live(self) -> list[int]:
        return [i for i, p in enumerate(self.fleet.procs) if p.poll() is None]

    async def slack_session(self, index: int) -> None:
        thread = f"17{index:08d}.000100"
        self.sent[f"slack:{thread}"] = 0
        n = 0
        while time.monotonic() < self.deadline:
            ts = thread if n == 0 else f"17{index:08d}.{n + 100:06d}"
            event = {"type": "app_mention", "user": f"U{index}", "text": f"<@UBOT> q{n}", "ts": ts, "channel": CHANNEL}
            if n:
                event["thread_ts"] = thread
            event_id = f"{CHANNEL}:{ts}"
            if not await self._deliver(index + n, self.slack.event_payload(event)):
                await asyncio.sleep(0.2)
                continue
            self.acked.setdefault(event_id, time.monotonic())
            n += 1
            self.sent[f"slack:{thread}"] = n
            deadline = time.monotonic() + ANSWER_GUARD_S
            while len(self.slack.replies(thread)) < n and time.monotonic() < deadline:
                waiter = self.slack.posted[thread]
                waiter.clear()
                try:
                    await asyncio.wait_for(waiter.wait(), 1.0)
                except TimeoutError:
                    pass
            if len(self.slack.replies(thread)) >= n:
                self.answered[event_id] = time.monotonic()
            else:
                return  # lost: counted at the end

    async def _deliver(self, start: int, payload: dict[str, Any]) -> bool:
        """Deliver to a live process, as a load balancer would; True once one acknowledged it."""
        live = self.live()
        for i in range(len(live)):
            try:
                if await self.fleet.deliver(live[(start + i) % len(live)], payload) == 200:
                    return True
            except (aiohttp.ClientError, OSError):
                continue
        return False

    async def web_session(self, index: int) -> None:
        session_id = f"soak-web-{index:05d}"
        self.sent[f"web:{session_id}"] = 0
        n = 0
        while time.monotonic() < self.deadline:
            body = {"session_id": session_id, "message": f"q{n}", "message_id": f"{session_id}-{n}"}
            live = self.live()
            url = self.fleet.urls[live[(index + n) % len(live)]] if live else self.fleet.urls[0]
            try:
                async with self.web.post(f"{url}/api/chat", json=body) as response:
                    payload = await response.json()
                    ok = response.status == 200 and payload.get("kind") in ("answer", "duplicate")
            except (aiohttp.ClientError, OSError, ValueError):
                ok = False
            if not ok:
                await asyncio.sleep(0.2)  # that process died or is busy: resend the same message_id elsewhere
                continue
            n += 1
            self.sent[f"web:{session_id}"] = n

    async def kill_forever(self, redis: RedisServer, run_for: float) -> None:
        """SIGKILL a random process every ``KILL_EVERY_S``, start it again, and restart Redis once, half-way."""
        started = time.monotonic()
        restarted = False
        inbox = RedisInbox(redis_client(redis.url), consumer="chaos-observer")
        try:
            while time.monotonic() < self.deadline:
                await asyncio.sleep(KILL_EVERY_S)
                if not restarted and time.monotonic() - started > run_for / 2:
                    await asyncio.to_thread(redis.restart)
                    self.redis_restarts += 1
                    restarted = True
                    continue
                victim = self.rng.choice(self.live())
                name = f"{socket.gethostname()}:{self.fleet.urls[victim].rsplit(':', 1)[1]}"
                try:
                    held = [e.event_id for e in await inbox.pending(limit=10_000) if e.owner == name]
                except Exception:
                    held = []
                self.fleet.kill(victim)
                killed_at = time.monotonic()
                self.kills += 1
                for event_id in held:
                    if event_id not in self.answered:
                        # Measured from the kill that orphaned it last: a message whose rescuer is killed too is
                        # orphaned again (the first kill's wait is reported separately, as the worst case).
                        self.first_orphaned.setdefault(event_id, killed_at)
                        self.orphans[event_id] = killed_at
                await asyncio.sleep(RESPAWN_AFTER_S)
                await self.fleet.respawn(victim)
        finally:
            await inbox.aclose()


async def chaos(seconds: float, sessions: int, keep: Path | None = None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="supportbot-chaos-"))
    redis = RedisServer(workdir / "redis")  # append-only, fsync always
    redis.start()
    rng = random.Random(11)

    async def slow_echo(messages: list[dict[str, Any]]) -> str:
        await asyncio.sleep(rng.uniform(0.05, 1.5))  # turns are in flight when a process dies
        return echo_responder(messages)

    try:
        async with ChaosSlack() as slack, FakeOpenAI(responder=slow_echo) as model:
            fleet = await start_fleet(
                PROCESSES, workdir, redis.url, slack, model, SUPPORTBOT_LOG__LEVEL=LOG_LEVEL,
                SUPPORTBOT_MEMORY__MAX_MESSAGES="100000",
            )  # fmt: skip
            web = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            try:
                started = time.monotonic()
                run = Chaos(fleet, slack, web, started + seconds)
                load = [run.slack_session(i) for i in range(sessions // 2)]
                load += [run.web_session(i) for i in range(sessions - sessions // 2)]
                await asyncio.gather(run.kill_forever(redis, seconds), *load)
                elapsed = time.monotonic() - started
                observer = RedisInbox(redis_client(redis.url), consumer="chaos-observer")
                try:
                    # What is still being answered (a web message's turn, a reply being marked done) settles first.
                    drain_until = time.monotonic() + ANSWER_GUARD_S
                    while (left := (await observer.stats()).depth) and time.monotonic() < drain_until:
                        await asyncio.sleep(0.5)
                finally:
                    await observer.aclose()
                duplicates = 0
                problems: list[str] = []
                for name, count in run.sent.items():
                    if name.startswith("slack:"):
                        replies = slack.replies(name.split(":", 1)[1])
                        if len(replies) > count:
                            duplicates += len(replies) - count
                            problems.append(f"{name}: sent {count}, replies {replies}")
                lost_stored, duplicated_stored = await lost_turns(redis.url, run.sent, problems)
                for event_id in [e for e in run.acked if e not in run.answered][:5]:
                    thread = event_id.split(":", 1)[1].split(".")[0] + ".000100"
                    problems.append(f"unanswered {event_id}: thread replies {slack.replies(thread)}")
            finally:
                await web.close()
                await stop_fleet(fleet)
    finally:
        redis.stop()
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.copytree(workdir, keep, dirs_exist_ok=True)
            shutil.rmtree(workdir, ignore_errors=True)
    recovery = [run.answered[e] - t for e, t in run.orphans.items() if e in run.answered]
    since_first = [run.answered[e] - t for e, t in run.first_orphaned.items() if e in run.answered]
    lost = [e for e in run.acked if e not in run.answered]
    return {
        "seconds": round(elapsed, 1),
        "processes": PROCESSES,
        "sessions": sessions,
        "kills": run.kills,
        "redis_restarts": run.redis_restarts,
        "slack_acknowledged": len(run.acked),
        "slack_answered": len(run.answered),
        "web_answered": sum(v for k, v in run.sent.items() if k.startswith("web:")),
        "lost": len(lost) + lost_stored,
        "duplicates": duplicates + duplicated_stored,
        "inbox_left": left,
        "problems": problems[:20],
        "orphaned": len(run.orphans),
        "recovery_s": {
            "p50": round(statistics.median(recovery), 2) if recovery else None,
            "p99": round(percentile(recovery, 0.99), 2) if recovery else None,
            "max": round(max(recovery), 2) if recovery else None,
            "max_since_first_kill": round(max(since_first), 2) if since_first else None,
        },
    }


def report(result: dict[str, Any]) -> bool:
    recovery = result["recovery_s"]
    print(
        f"chaos: {result['seconds']} s, {result['processes']} processes, {result['sessions']} sessions, "
        f"{result['kills']} kills, {result['redis_restarts']} Redis restart"
    )
    print(f"  Slack: {result['slack_acknowledged']} acknowledged, {result['slack_answered']} answered")
    print(f"  web: {result['web_answered']} answered")
    print(
        f"  orphaned by a kill: {result['orphaned']}; recovery p50 {recovery['p50']} s, p99 {recovery['p99']} s, "
        f"max {recovery['max']} s (from the first kill that orphaned a message: {recovery['max_since_first_kill']} s)"
    )
    p99 = recovery["p99"]
    checks = [
        ("lost = 0", result["lost"] == 0, result["lost"]),
        ("duplicates = 0", result["duplicates"] == 0, result["duplicates"]),
        ("inbox empty at the end", result["inbox_left"] == 0, result["inbox_left"]),
        (f"recovery p99 <= {RECOVERY_TARGET_S:.0f} s", p99 is not None and p99 <= RECOVERY_TARGET_S, p99),
    ]
    for name, ok, observed in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {observed}")
    for problem in result["problems"]:
        print(f"  problem: {problem}")
    return all(ok for _, ok, _ in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", type=Path, help="keep the processes' logs in this folder")
    args = parser.parse_args()
    result = asyncio.run(chaos(args.seconds, args.sessions, args.keep))
    ok = report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
