"""What the durable inbox adds to a message: recording it before the acknowledgement, and a worker taking it and
marking it done, on Redis (a private redis-server) and SQLite, measured side by side in one run.

    .venv/bin/python bench/inbox_bench.py --messages 2000 --json docs/bench_inbox.json
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bot.inbox import Inbox, open_inbox
from bot.messages import IncomingMessage
from tests.redis_server import RedisServer


def message(n: int) -> IncomingMessage:
    thread = f"17{n % 200:08d}.000100"
    return IncomingMessage("slack", "T1", "C1", thread, "U1", f"question {n} " + "x" * 200, f"C1:{n}.000200")


async def measure(inbox: Inbox, messages: int) -> dict[str, float]:
    """Median and p99 of a recording (``put``), and of a worker's take plus done per message, in milliseconds."""
    put: list[float] = []
    for n in range(messages):
        started = time.perf_counter()
        await inbox.put(message(n), route={"kind": "answer"}, session_id=f"s{n % 200}")
        put.append(time.perf_counter() - started)
    handled: list[float] = []
    done = 0
    while done < messages:
        started = time.perf_counter()
        taken = await inbox.take(limit=1, wait=5)
        if not taken:
            continue
        await inbox.done(taken[0])
        handled.append(time.perf_counter() - started)
        done += 1

    def ms(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "put_p50_ms": round(statistics.median(put) * 1000, 3),
        "put_p99_ms": ms(put, 0.99),
        "take_and_done_p50_ms": round(statistics.median(handled) * 1000, 3),
        "take_and_done_p99_ms": ms(handled, 0.99),
    }


async def run(messages: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="supportbot-inbox-bench-"))
    redis = RedisServer(workdir / "redis", appendonly=False)
    redis.start()
    results: dict[str, Any] = {"messages": messages}
    try:
        for name, url in (("redis", redis.url), ("sqlite", f"sqlite:///{workdir / 'inbox.db'}")):
            inbox = open_inbox(url, consumer="bench", visibility=15, dedupe_ttl=3600, shards=4)
            try:
                results[name] = await measure(inbox, messages)
            finally:
                await inbox.aclose()
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.messages))
    for backend in ("redis", "sqlite"):
        r = result[backend]
        print(
            f"inbox on {backend}: record p50 {r['put_p50_ms']} ms (p99 {r['put_p99_ms']}), "
            f"take + done p50 {r['take_and_done_p50_ms']} ms (p99 {r['take_and_done_p99_ms']})"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
