"""One process of the SQLite contention test: a whole bot on a shared SQLite file, started on a signal.

Usage: ``python -m tests.sqlite_contender DB_PATH NAME TURNS``. It prints ``ready`` once its bot is built, waits
for a line on stdin (so several processes open the new file at the same moment), runs TURNS turns spread over
three sessions it shares with the other processes, and prints each reply's kind, one per line.
"""

from __future__ import annotations

import asyncio
import sys

from bot.app import build_bot
from bot.config import load_settings
from bot.messages import IncomingMessage

SESSIONS = 3


async def main(path: str, name: str, turns: int) -> None:
    settings = load_settings(
        "/dev/null",
        env={
            "SUPPORTBOT_MEMORY__STORE_URL": f"sqlite:///{path}",
            "SUPPORTBOT_MEMORY__EMBEDDINGS": "hashing",
            "SUPPORTBOT_RATE_LIMIT__MESSAGES": "0",
        },
    )
    bot = build_bot(settings)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    try:
        for n in range(turns):
            msg = IncomingMessage(
                platform="cli",
                workspace=None,
                channel=f"shared-{n % SESSIONS}",
                thread=None,
                user="contender",
                text=f"{name} says {n}: my printer is jammed",
                event_id=f"{name}-{n}",
                is_direct=True,
            )
            reply = await bot.handle(msg)
            print(reply.kind.value if reply is not None else "none", flush=True)
    finally:
        await bot.aclose()
        await bot.store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
