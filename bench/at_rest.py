"""Data at rest: what an erasure leaves in the SQLite files, and what encryption costs.

1. Erasure while another connection keeps the database open (as ``serve`` does): a user's 40 turns and another
   user's 40 are written, ``erase-user`` runs from a second connection, and the erased user's words are counted
   in the database file, its write-ahead log and its shared-memory file, with ``secure_delete`` on or off and the
   log truncated after the deletion or not (the store does both; the other three rows show why).
2. The codec: microseconds to seal and unseal a message body, a summary and a 384-float vector with Fernet.
3. A turn's two store calls on SQLite (window of 20 messages, a summary, 5 entities) without and with a key.

    .venv/bin/python bench/at_rest.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.memory import Entity, StoreLimits
from bot.memory.codec import EncryptedCodec, MessageCodec
from bot.memory.sqlite import SqliteStore
from bot.messages import StoredMessage
from bot.privacy import erase_user
from bot.session import SessionKey

WORD = "Wombleton"
ERASED = SessionKey("slack", "T1", "D1", None, "U1")
KEPT = SessionKey("slack", "T1", "D2", None, "U2")


class _KeepsTheLog(SqliteStore):
    """The store as it would be without the truncation after a deletion."""

    async def _truncate_log(self) -> None:
        return None


async def erasure(*, secure_delete: bool, truncate: bool) -> dict[str, int]:
    path = Path(tempfile.mkdtemp()) / "supportbot.db"
    serving = SqliteStore(str(path))
    cli = (SqliteStore if truncate else _KeepsTheLog)(str(path))
    try:
        for store in (serving, cli):
            db = await store._conn()
            await db.execute(f"PRAGMA secure_delete={'ON' if secure_delete else 'OFF'}")
        for n in range(40):
            for key, user in ((ERASED, "U1"), (KEPT, "U2")):
                start = await serving.begin_turn(key, event_id=f"e{n}", window=10)
                assert start.lease is not None
                said = (
                    f"turn {n}: ship it to 17 Quokka Lane, {WORD} " if user == "U1" else f"turn {n}: ok "
                ) + "x" * 300
                await serving.commit_turn(start.lease, (StoredMessage("user", said, n, user=user),), platform="slack")
        await erase_user(cli, "slack", "U1")
        counts = {}
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{path}{suffix}")
            counts[part.name] = part.read_bytes().count(WORD.encode()) if part.exists() else 0
        return counts
    finally:
        await cli.aclose()
        await serving.aclose()


def micros(action: object, repeat: int = 2_000) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        action()  # type: ignore[operator]
    return (time.perf_counter() - started) / repeat * 1e6


def codec_costs() -> None:
    codec = EncryptedCodec([Fernet.generate_key().decode()])
    message = StoredMessage("user", "My VPN drops every ten minutes since the update " * 6, 1.0, user="U1")
    summary = "Earlier, the user said:\n" + "\n".join(f"- point {i} about the VPN client 6.2.{i}" for i in range(30))
    vector = bytes(384 * 4)
    body, text, sealed = codec.encode(message), codec.seal_text(summary), codec.seal_vector(vector)
    rows = [
        ("message body", len(message.to_json()), len(body), micros(lambda: codec.encode(message)),
         micros(lambda: codec.decode(body))),
        ("summary", len(summary), len(text), micros(lambda: codec.seal_text(summary)),
         micros(lambda: codec.unseal_text(text))),
        ("vector (384 floats)", len(vector), len(sealed), micros(lambda: codec.seal_vector(vector)),
         micros(lambda: codec.unseal_vector(sealed))),
    ]  # fmt: skip
    print("| value | bytes in clear | bytes sealed | seal µs | unseal µs |")
    print("|---|---:|---:|---:|---:|")
    for name, clear, stored, seal, unseal in rows:
        print(f"| {name} | {clear:,} | {stored:,} | {seal:.1f} | {unseal:.1f} |")


async def turn_cost(codec: MessageCodec, turns: int = 300) -> float:
    """Median ms of begin_turn + commit_turn on a session with a full window, a summary and entities."""
    path = Path(tempfile.mkdtemp()) / "supportbot.db"
    store = SqliteStore(str(path), limits=StoreLimits(max_messages=200), codec=codec)
    key = SessionKey("web", None, "bench", None, "U1")
    samples = []
    try:
        for n in range(turns):
            started = time.perf_counter()
            start = await store.begin_turn(key, event_id=f"e{n}", window=20)
            assert start.lease is not None and start.context is not None
            pair = (
                StoredMessage("user", f"question {n}: my VPN drops every ten minutes " * 3, n, user="U1"),
                StoredMessage("assistant", f"answer {n}: reinstall the client, then restart " * 6, n + 0.5),
            )
            await store.commit_turn(start.lease, pair, platform="web")
            samples.append(time.perf_counter() - started)
            if n == 10:
                fence = start.context.fence
                await store.save_summary(key, summary="Earlier, the user said: " + "x" * 1500, after=0, upto=4,
                                         fence=fence)  # fmt: skip
                await store.save_entities(
                    key, {f"fact{i}": Entity(f"value {i}", time.time()) for i in range(5)}, fence=fence
                )
    finally:
        await store.aclose()
    return statistics.median(samples[50:]) * 1000


async def main() -> None:
    print("## Erasure while the database stays open: occurrences of the erased user's word\n")
    print("| secure_delete | log truncated | supportbot.db | supportbot.db-wal | supportbot.db-shm |")
    print("|---|---|---:|---:|---:|")
    for secure_delete in (False, True):
        for truncate in (False, True):
            counts = await erasure(secure_delete=secure_delete, truncate=truncate)
            print(
                f"| {'on' if secure_delete else 'off'} | {'yes' if truncate else 'no'} | "
                + " | ".join(str(counts[name]) for name in ("supportbot.db", "supportbot.db-wal", "supportbot.db-shm"))
                + " |"
            )
    print("\n## Fernet, per value\n")
    codec_costs()
    plain = await turn_cost(MessageCodec())
    encrypted = await turn_cost(EncryptedCodec([Fernet.generate_key().decode()]))
    print("\n## A turn's two store calls on SQLite (median of 250)\n")
    print(f"in clear {plain:.2f} ms, encrypted {encrypted:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
