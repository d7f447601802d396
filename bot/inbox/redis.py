"""``redis://``: the inbox as Redis Streams with one consumer group, spread over ``INBOX_SHARDS`` streams.

Keys of shard ``n`` share the hash tag ``{inbox:n}``, so every script stays in one slot and the inbox runs
unchanged on Redis Cluster, with the shards spread over its slots. A session always lands in the same shard
(a CRC32 of its id), so its entries keep their arrival order in one stream.

=============================  ==========  =====================================================================
key                            type        holds
=============================  ==========  =====================================================================
``sb:{inbox:n}:stream``        stream      entries not yet done (``XADD``; removed with ``XACK`` + ``XDEL``)
``sb:{inbox:n}:rec:<msg>``     string      "recorded": a platform's retry of the message makes no second entry
``sb:{inbox:n}:q:<session>``   list        the session's entries not yet done, oldest first (its head answers)
``sb:{inbox:n}:replies``       hash        entry id -> where an attempt started posting its reply
``sb:{inbox:n}:dead``          stream      entries given up after ``INBOX_MAX_ATTEMPTS`` attempts (capped)
=============================  ==========  =====================================================================

Workers read with ``XREADGROUP`` (one blocking reader per shard), hold what they read in their pending list,
refresh it with ``XCLAIM … JUSTID`` while they work on it (the heartbeat), and take over the entries of a worker
that stopped heart-beating with ``XAUTOCLAIM`` once they are idle for the visibility timeout. A restarted worker
with the same consumer name reads its own pending list first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from bot.constants import DEDUPE_TTL_S, INBOX_SHARDS, INBOX_VISIBILITY_S, KEY_PREFIX
from bot.errors import StoreUnavailable
from bot.inbox.base import (
    Delivery,
    InboxCounters,
    InboxStats,
    PendingEntry,
    Route,
    decode_entry,
    dedupe_key,
    encode_entry,
)
from bot.inbox.worker import cancel_and_wait
from bot.memory.codec import MessageCodec
from bot.memory.redis import redis_call
from bot.messages import IncomingMessage

log = logging.getLogger("supportbot.inbox")

GROUP = "workers"
READ_BLOCK_MS = 1_000  # a reader's XREADGROUP waits this long for new entries (below the socket timeout)
READ_COUNT = 100  # entries one read takes at most
DEAD_MAX = 10_000  # entries kept in a shard's dead-letter stream
RECLAIM_EVERY_S = 1.0  # how often a worker looks for entries to take over (and entries given back at shutdown)
HEAD_RECHECK_S = 0.25  # how often entries waiting behind an earlier one of their session look again
HEADS_CHECKED = 64  # held entries a take checks at least (the oldest first)

# KEYS: stream, recorded marker, session queue ; ARGV: entry, dedupe ttl (ms), has session ('1'/'0')
_PUT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
if ARGV[3] == '1' then redis.call('RPUSH', KEYS[3], id) end
return id
"""

# KEYS: stream, then one session queue per id ; ARGV: entry ids. Returns the ids that head their session.
_HEADS = """
local heads = {}
for i = 1, #ARGV do
  local id, q = ARGV[i], KEYS[i + 1]
  while true do
    local head = redis.call('LINDEX', q, 0)
    if (not head) or head == id then table.insert(heads, id) break end
    if #redis.call('XRANGE', KEYS[1], head, head) > 0 then break end
    redis.call('LPOP', q)
  end
end
return heads
"""

# KEYS: stream ; ARGV: group, consumer, entry ids. Refreshes the entries this consumer still holds; returns them.
_EXTEND = """
local held = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(held, ARGV[i])
  end
end
return held
"""

# KEYS: stream, session queue, replies ; ARGV: group, entry id
_DONE = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('LREM', KEYS[2], 1, ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""

# KEYS: stream, session queue, replies, dead ; ARGV: group, entry id, entry as written, reason, dead max
_ASIDE = """
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[3], 'reason', ARGV[4], 'entry', ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('LREM', KEYS[2], 1, ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
"""

# KEYS: stream, replies ; ARGV: group, consumer, min idle (ms), start, count.
# Takes over idle entries; returns {next start, {{id, fields, deliveries, reply ref}...}}.
_RECLAIM = """
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 1
    if #p > 0 then n = p[1][4] end
    table.insert(out, {e[1], e[2], n, redis.call('HGET', KEYS[2], e[1]) or ''})
  end
end
return {r[1], out}
"""

# KEYS: stream, replies ; ARGV: group, consumer. This consumer's own pending entries (a restart under its name).
_OWN = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000, ARGV[2])
local out = {}
for _, row in ipairs(p) do
  local e = redis.call('XRANGE', KEYS[1], row[1], row[1])
  if #e > 0 then
    table.insert(out, {row[1], e[1][2], row[4] + 1, redis.call('HGET', KEYS[2], row[1]) or ''})
  else
    redis.call('XACK', KEYS[1], ARGV[1], row[1])
  end
end
return out
"""


def _shard_tag(shard: int) -> str:
    return f"{KEY_PREFIX}:{{inbox:{shard}}}"


def _entry_id(shard: int, stream_id: str) -> str:
    """An entry's id across shards (stream ids are unique within one stream only)."""
    return f"{shard}/{stream_id}"


def _split(entry_id: str) -> tuple[int, str]:
    """The shard and stream id of an entry id."""
    shard, _, stream_id = entry_id.partition("/")
    return int(shard), stream_id


class RedisInbox:
    """The inbox on Redis Streams (single node or cluster)."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        consumer: str,
        codec: MessageCodec | None = None,
        shards: int = INBOX_SHARDS,
        visibility: float = INBOX_VISIBILITY_S,
        dedupe_ttl: float = DEDUPE_TTL_S,
    ) -> None:
        self.consumer = consumer
        self.counters = InboxCounters()
        self._client = client
        self._codec = codec or MessageCodec()
        self._shards = shards
        self._visibility = visibility
        self._dedupe_ttl = dedupe_ttl
        self._put = client.register_script(_PUT)
        self._heads = client.register_script(_HEADS)
        self._extend = client.register_script(_EXTEND)
        self._done = client.register_script(_DONE)
        self._reclaim = client.register_script(_RECLAIM)
        self._aside = client.register_script(_ASIDE)
        self._own = client.register_script(_OWN)
        self._held: dict[str, Delivery] = {}  # read into this consumer's pending list, not handed out yet
        self._handed: dict[str, Delivery] = {}  # handed to the worker, until done or released
        self._arrived = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._groups: set[int] = set()
        self._closed = False
        self._giving_back = False

    # ------------------------------------------------------------------ keys

    def shard_of(self, session_id: str, event_id: str) -> int:
        """The shard a message lands in: its session's, so the session's entries stay in one stream."""
        return zlib.crc32((session_id or event_id).encode("utf-8", "surrogatepass")) % self._shards

    def _stream(self, shard: int) -> str:
        return f"{_shard_tag(shard)}:stream"

    def _queue(self, shard: int, session_id: str) -> str:
        return f"{_shard_tag(shard)}:q:{session_id}"

    def _replies(self, shard: int) -> str:
        return f"{_shard_tag(shard)}:replies"

    async def _call(self, what: str, op: Callable[[], Awaitable[Any]]) -> Any:
        return await redis_call(f"redis inbox {what}", op)

    # ------------------------------------------------------------------ recording

    async def put(self, message: IncomingMessage, *, route: Route, session_id: str) -> bool:
        shard = self.shard_of(session_id, message.event_id)
        marker = f"{_shard_tag(shard)}:rec:{dedupe_key(session_id, message.event_id)}"
        entry = self._codec.seal(encode_entry(message, route=route, session_id=session_id))
        keys = [self._stream(shard), marker, self._queue(shard, session_id)]
        args: list[str | int] = [entry, int(self._dedupe_ttl * 1000), "1" if session_id else "0"]
        recorded = await self._call("put", lambda: self._put(keys=keys, args=args))
        if not recorded:
            self.counters.already_recorded += 1
            return False
        self.counters.recorded += 1
        return True

    # ------------------------------------------------------------------ consuming

    async def _ensure_group(self, shard: int) -> None:
        if shard in self._groups:
            return
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self._client.xgroup_create(self._stream(shard), GROUP, id="0", mkstream=True)
        self._groups.add(shard)

    def _start_readers(self) -> None:
        if self._readers or self._closed:
            return
        loop = asyncio.get_running_loop()
        for shard in range(self._shards):
            self._readers.append(loop.create_task(self._read_forever(shard), name=f"supportbot-inbox-read-{shard}"))
        self._readers.append(loop.create_task(self._reclaim_forever(), name="supportbot-inbox-reclaim"))
        self._readers.append(loop.create_task(self._heartbeat_forever(), name="supportbot-inbox-heartbeat"))

    async def _hold(self, shard: int, stream_id: str, fields: Any, *, attempts: int, reply_ref: str | None) -> None:
        entry_id = _entry_id(shard, stream_id)
        if entry_id in self._held or entry_id in self._handed:
            return
        values = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
        raw = str(values.get("e", ""))
        try:
            message, route, session_id = decode_entry(self._codec.unseal(raw))
        except (ValueError, StoreUnavailable) as exc:
            # Not retried forever by every worker: kept aside, as written, for an operator (a wrong encryption key
            # makes every entry unreadable; they can be replayed once the key is right).
            log.error("inbox entry %s cannot be read (%s); set aside in %s:dead", entry_id, exc, _shard_tag(shard))
            await self._set_aside(shard, stream_id, raw, reason=f"unreadable: {exc}")
            return
        enqueued = int(stream_id.split("-", 1)[0]) / 1000
        self._held[entry_id] = Delivery(
            entry_id, message, route, session_id, enqueued, attempts=attempts, reply_ref=reply_ref or None
        )
        self._arrived.set()

    async def _read_forever(self, shard: int) -> None:
        """Hold what the shard has for this consumer: first its own unfinished entries, then new ones."""
        own_read = False
        # redis-py may swallow a cancellation that lands in a blocking read, so the loop also stops on its own flag.
        while not self._closed:
            try:
                await self._ensure_group(shard)
                if not own_read:
                    keys = [self._stream(shard), self._replies(shard)]
                    rows = await self._own(keys=keys, args=[GROUP, self.consumer])
                    for stream_id, fields, attempts, ref in rows:
                        self.counters.redeliveries += 1
                        await self._hold(shard, stream_id, fields, attempts=int(attempts), reply_ref=ref)
                    own_read = True
                reply: Any = await self._client.xreadgroup(
                    GROUP, self.consumer, {self._stream(shard): ">"}, count=READ_COUNT, block=READ_BLOCK_MS
                )
                for _, entries in reply or []:
                    for stream_id, fields in entries:
                        await self._hold(shard, stream_id, fields, attempts=1, reply_ref=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a reader must outlive any one failure, or its shard goes unread
                if "NOGROUP" in str(exc):
                    self._groups.discard(shard)  # the server lost its data (a restart without persistence)
                log.warning("inbox shard %d cannot be read: %s: %s", shard, type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def _reclaim_forever(self) -> None:
        """Take over entries whose worker stopped heart-beating for the visibility timeout."""
        while not self._closed:
            await asyncio.sleep(min(self._visibility / 4, RECLAIM_EVERY_S))
            if self._giving_back:
                return
            for shard in range(self._shards):
                try:
                    await self._reclaim_shard(shard)
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError) as exc:
                    log.warning("inbox shard %d cannot be reclaimed: %s", shard, type(exc).__name__)

    async def _reclaim_shard(self, shard: int) -> None:
        await self._ensure_group(shard)
        start = "0-0"
        keys = [self._stream(shard), self._replies(shard)]
        while True:
            args: list[str | int] = [GROUP, self.consumer, int(self._visibility * 1000), start, READ_COUNT]
            start, rows = await self._reclaim(keys=keys, args=args)
            for stream_id, fields, attempts, ref in rows:
                entry_id = _entry_id(shard, stream_id)
                if entry_id in self._held or entry_id in self._handed:
                    continue  # this worker's own, idle through an outage: it still holds it
                self.counters.redeliveries += 1
                self.counters.claimed_from_dead += 1
                await self._hold(shard, stream_id, fields, attempts=int(attempts), reply_ref=ref)
            if start == "0-0" or not rows:
                return

    async def _heartbeat_forever(self) -> None:
        """Keep the entries held but not yet handed out (waiting behind their session's head) from going idle."""
        while not self._closed:
            await asyncio.sleep(self._visibility / 3)
            with contextlib.suppress(StoreUnavailable):
                waiting = list(self._held.values())
                held = await self.extend(waiting)
                for delivery in waiting:
                    if delivery.entry_id not in held:
                        self._held.pop(delivery.entry_id, None)  # another worker took it over

    async def take(self, *, limit: int, wait: float) -> list[Delivery]:
        self._start_readers()
        deadline = time.monotonic() + wait
        while True:
            self._arrived.clear()
            taken = await self._ready(limit) if self._held else []
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            timeout = min(remaining, HEAD_RECHECK_S) if self._held else remaining
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)

    async def _ready(self, limit: int) -> list[Delivery]:
        """The held entries that head their session, handed out (at most one per session).

        Only the oldest few held entries of sessions not already being answered here are checked per take, so a
        backlog of thousands costs a take no more than a handful of keys; the rest are looked at in later takes.
        """
        busy = {d.session_id for d in self._handed.values() if d.session_id}
        waiting = (d for d in self._held.values() if not d.session_id or d.session_id not in busy)
        by_shard: dict[int, list[Delivery]] = {}
        for delivery in heapq.nsmallest(max(4 * limit, HEADS_CHECKED), waiting, key=lambda d: d.enqueued):
            by_shard.setdefault(_split(delivery.entry_id)[0], []).append(delivery)
        ready: list[Delivery] = []
        for shard, candidates in by_shard.items():
            with_session = [d for d in candidates if d.session_id]
            ready += [d for d in candidates if not d.session_id]
            if with_session:
                keys = [self._stream(shard), *(self._queue(shard, d.session_id) for d in with_session)]
                args = [_split(d.entry_id)[1] for d in with_session]
                heads = set(await self._call("take", partial(self._heads, keys=keys, args=args)))
                ready += [d for d in with_session if _split(d.entry_id)[1] in heads]
        taken: list[Delivery] = []
        for delivery in sorted(ready, key=lambda d: d.enqueued):
            if len(taken) >= limit or (delivery.session_id and delivery.session_id in busy):
                continue
            busy.add(delivery.session_id)
            self._held.pop(delivery.entry_id, None)
            self._handed[delivery.entry_id] = delivery
            taken.append(delivery)
        return taken

    async def extend(self, deliveries: Sequence[Delivery]) -> set[str]:
        by_shard: dict[int, list[str]] = {}
        for delivery in deliveries:
            shard, stream_id = _split(delivery.entry_id)
            by_shard.setdefault(shard, []).append(stream_id)
        held: set[str] = set()
        for shard, ids in by_shard.items():
            args = [GROUP, self.consumer, *ids]
            keys = [self._stream(shard)]
            still = await self._call("extend", partial(self._extend, keys=keys, args=args))
            held.update(_entry_id(shard, stream_id) for stream_id in still)
        return held

    async def done(self, delivery: Delivery) -> None:
        shard, stream_id = _split(delivery.entry_id)
        keys = [self._stream(shard), self._queue(shard, delivery.session_id), self._replies(shard)]
        await self._call("done", lambda: self._done(keys=keys, args=[GROUP, stream_id]))
        self._handed.pop(delivery.entry_id, None)
        self._held.pop(delivery.entry_id, None)
        self._arrived.set()

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        self._giving_back = True  # shutting down: take nothing over, or this worker would reclaim what it gives back
        for delivery in deliveries:
            self._handed.pop(delivery.entry_id, None)
            self._held.pop(delivery.entry_id, None)
        # Marked idle past the visibility timeout, so the next worker's reclaim takes them at once.
        idle = int(self._visibility * 1000) * 2
        for delivery in deliveries:
            shard, stream_id = _split(delivery.entry_id)
            stream = self._stream(shard)
            with contextlib.suppress(StoreUnavailable):
                await self._call(
                    "release",
                    partial(self._client.xclaim, stream, GROUP, self.consumer, 0, [stream_id], idle=idle, justid=True),
                )

    async def postpone(self, delivery: Delivery) -> None:
        self._handed.pop(delivery.entry_id, None)  # it idles now, and the reclaim takes it again

    async def abandon(self, delivery: Delivery, *, reason: str) -> None:
        shard = _split(delivery.entry_id)[0]
        body = self._codec.seal(encode_entry(delivery.message, route=delivery.route, session_id=delivery.session_id))
        await self._set_aside(shard, _split(delivery.entry_id)[1], body, reason=reason, session_id=delivery.session_id)
        self._handed.pop(delivery.entry_id, None)
        self._held.pop(delivery.entry_id, None)
        self._arrived.set()

    async def _set_aside(self, shard: int, stream_id: str, raw: str, *, reason: str, session_id: str = "") -> None:
        """Move an entry to the shard's dead-letter stream and out of the inbox, in one script."""
        keys = [self._stream(shard), self._queue(shard, session_id), self._replies(shard), f"{_shard_tag(shard)}:dead"]
        args: list[str | int] = [GROUP, stream_id, raw, reason, DEAD_MAX]
        await self._call("set aside", lambda: self._aside(keys=keys, args=args))
        self.counters.abandoned += 1

    async def note_reply(self, delivery: Delivery, ref: str) -> None:
        shard, stream_id = _split(delivery.entry_id)
        replies = self._replies(shard)
        await self._call("note_reply", lambda: self._client.hset(replies, stream_id, ref))

    # ------------------------------------------------------------------ looking

    async def stats(self) -> InboxStats:
        depth, oldest, in_flight = 0, None, 0
        for shard in range(self._shards):
            stream = self._stream(shard)
            depth += await self._call("stats", partial(self._client.xlen, stream))
            first = await self._call("stats", partial(self._client.xrange, stream, count=1))
            if first:
                at = int(first[0][0].split("-", 1)[0]) / 1000
                oldest = at if oldest is None else min(oldest, at)
            with contextlib.suppress(StoreUnavailable):
                summary = await self._call("stats", partial(self._client.xpending, stream, GROUP))
                in_flight += int(summary.get("pending", 0)) if isinstance(summary, dict) else 0
        age = 0.0 if oldest is None else max(time.time() - oldest, 0.0)
        return InboxStats(depth=depth, oldest_age=age, in_flight=in_flight)

    async def pending(self, *, limit: int = 100) -> list[PendingEntry]:
        rows: list[PendingEntry] = []
        for shard in range(self._shards):
            stream = self._stream(shard)
            entries = await self._call("pending", partial(self._client.xrange, stream, count=limit))
            owners: dict[str, tuple[str, int]] = {}
            with contextlib.suppress(StoreUnavailable):
                details = await self._call(
                    "pending", partial(self._client.xpending_range, stream, GROUP, "-", "+", limit)
                )
                owners = {d["message_id"]: (d["consumer"], int(d["times_delivered"])) for d in details}
            for stream_id, fields in entries:
                try:
                    message, _, session_id = decode_entry(self._codec.unseal(fields["e"]))
                except (ValueError, StoreUnavailable):
                    continue
                owner, attempts = owners.get(stream_id, (None, 0))
                rows.append(
                    PendingEntry(
                        entry_id=_entry_id(shard, stream_id),
                        platform=message.platform,
                        session_id=session_id,
                        event_id=message.event_id,
                        enqueued=int(stream_id.split("-", 1)[0]) / 1000,
                        owner=owner,
                        attempts=attempts,
                    )
                )
        return sorted(rows, key=lambda r: r.enqueued)[:limit]

    async def ping(self) -> None:
        await self._call("ping", self._client.ping)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(set(self._readers))
        self._readers.clear()
        await self._client.aclose()
