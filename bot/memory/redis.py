"""``redis://`` and ``rediss://``: the production store, on ``redis.asyncio``.

Layout of one session (all keys share the session id as hash tag, so Lua stays in one cluster slot, and all
carry the same idle TTL, refreshed by every commit):

=====================  ===========  ===================================================
key                    type         holds
=====================  ===========  ===================================================
``sb:{id}:msgs``       list         recent messages as JSON, trimmed to ``max_messages``
``sb:{id}:summary``    string       the rolling summary (written by the summary layer)
``sb:{id}:meta``       hash         created, last_active (ms), platform, turns, seq, summary_upto
``sb:{id}:users``      set          platform user ids seen in the session
``sb:{id}:seen``       sorted set   answered delivery ids, scored by answer time (ms)
``sb:{id}:lease``      string       ``<fencing token>:<event id>`` of the turn in progress
``sb:{id}:fence``      counter      the last fencing token handed out
``sb:{id}:entities``   hash         facts about the user's environment: name -> {"value", "updated"}
``sb:{id}:recall``     sorted set   embedded turns for vector recall, scored by sequence number
``sb:{id}:audit``      stream       the session's tool calls (the audit log), capped at ``max_audit``
``sb:{id}:erased``     string       after a deletion, for ``dedupe_ttl``: ``<last fencing token>:<event id>``
=====================  ===========  ===================================================

``seq`` counts the messages ever saved (the newest message's sequence number); the summary covers messages
``1..summary_upto``. With an encrypting codec every value holding what a user said is ciphertext: message bodies,
the summary, entity values (their ``updated`` stays in clear for the merge script), recalled turns' text and
vectors, and audit entries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from bot.constants import (
    REDIS_CLUSTER_NODE_CONNECTIONS,
    REDIS_MAX_CONNECTIONS,
    REDIS_POOL_WAIT_S,
    REDIS_RETRIES,
    REDIS_RETRY_BASE_S,
    REDIS_RETRY_CAP_S,
)
from bot.errors import LeaseLost, StoreUnavailable
from bot.memory.base import (
    AuditEntry,
    ClaimStatus,
    Entities,
    Entity,
    Lease,
    RecallItem,
    SessionContext,
    SessionMeta,
    SessionRecord,
    StoreLimits,
    SummaryWork,
    TurnEmbedding,
    TurnStart,
)
from bot.memory.codec import MessageCodec
from bot.messages import StoredMessage
from bot.session import SessionKey, user_index_key

T = TypeVar("T")

CLUSTER_SCHEME = "redis+cluster://"

_PARTS = ("msgs", "summary", "meta", "users", "seen", "lease", "fence", "entities", "recall", "audit")

# Whether a write made under lease token ``token`` comes from before the session's deletion (the tombstone
# ``key`` holds the last token handed out then).
_FENCED = """
local function fenced(key, token)
  local erased = redis.call('GET', key)
  if not erased then return false end
  return tonumber(token) <= tonumber(string.sub(erased, 1, string.find(erased, ':', 1, true) - 1))
end
"""

# KEYS: msgs summary meta users seen lease fence entities recall audit erased
# ARGV: event id, window, lease ttl (ms), idle ttl (ms), recall after ('' for none: the recall candidates are the
#       turns before the window with a sequence number above it), the turn's earlier lease token ('' for none)
_BEGIN = """
local floor = 0
local erased = redis.call('GET', KEYS[11])
if erased then
  local sep = string.find(erased, ':', 1, true)
  floor = tonumber(string.sub(erased, 1, sep - 1))
  if ARGV[6] ~= '' and tonumber(ARGV[6]) <= floor then return {'erased'} end
  if string.sub(erased, sep + 1) == ARGV[1] then return {'dup'} end
end
if redis.call('ZSCORE', KEYS[5], ARGV[1]) then return {'dup'} end
local held = redis.call('GET', KEYS[6])
if held then
  local sep = string.find(held, ':', 1, true)
  if string.sub(held, sep + 1) == ARGV[1] then return {'inprogress'} end
  return {'busy', redis.call('PTTL', KEYS[6])}
end
local token = redis.call('INCR', KEYS[7])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[7], token)
end
redis.call('PEXPIRE', KEYS[7], ARGV[4])
redis.call('SET', KEYS[6], token .. ':' .. ARGV[1], 'PX', ARGV[3])
local window = tonumber(ARGV[2])
local msgs = {}
if window > 0 then msgs = redis.call('LRANGE', KEYS[1], -window, -1) end
local recall = {}
if ARGV[5] ~= '' then
  local first = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0') - #msgs + 1
  if first > tonumber(ARGV[5]) + 1 then
    recall = redis.call('ZRANGEBYSCORE', KEYS[9], '(' .. ARGV[5], '(' .. first, 'WITHSCORES')
  end
end
return {'ok', token, redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[3]), msgs, redis.call('HGETALL', KEYS[8]),
        recall}
"""

# KEYS: msgs summary meta users seen lease fence entities recall audit
#       [+ the user's session index, on a single node only: it lives in another slot]
# ARGV: lease value, event id, now (ms), idle ttl (ms), max messages, dedupe ttl (ms), platform, user,
#       max unsummarized (0 = off), session id, recall member ('' for none), max recall, messages...
_COMMIT = """
if redis.call('GET', KEYS[6]) ~= ARGV[1] then return 0 end
if KEYS[11] then
  redis.call('SADD', KEYS[11], ARGV[10])
  redis.call('PEXPIRE', KEYS[11], ARGV[4])
end
local total = redis.call('HINCRBY', KEYS[3], 'seq', #ARGV - 12)
redis.call('RPUSH', KEYS[1], unpack(ARGV, 13))
if ARGV[11] ~= '' then
  redis.call('ZADD', KEYS[9], total - (#ARGV - 12) + 1, ARGV[11])
  redis.call('ZREMRANGEBYRANK', KEYS[9], 0, -tonumber(ARGV[12]) - 1)
end
local keep, cap = tonumber(ARGV[5]), tonumber(ARGV[9])
if cap > 0 then
  local upto = tonumber(redis.call('HGET', KEYS[3], 'summary_upto') or '0')
  keep = math.min(math.max(keep, total - upto), cap)
end
redis.call('LTRIM', KEYS[1], -keep, -1)
redis.call('HSETNX', KEYS[3], 'created', ARGV[3])
redis.call('HSET', KEYS[3], 'last_active', ARGV[3], 'platform', ARGV[7])
redis.call('HINCRBY', KEYS[3], 'turns', 1)
if ARGV[8] ~= '' then redis.call('SADD', KEYS[4], ARGV[8]) end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[6]))
redis.call('DEL', KEYS[6])
for _, i in ipairs({1, 2, 3, 4, 5, 7, 8, 9, 10}) do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return 1
"""

# KEYS: msgs summary meta ; ARGV: upto (sequence number)
_UNSUMMARIZED = """
local total = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
local after = tonumber(redis.call('HGET', KEYS[3], 'summary_upto') or '0')
local upto = math.min(tonumber(ARGV[1]), total)
local summary = redis.call('GET', KEYS[2])
if upto <= after then return {after, summary, {}} end
local first = total - redis.call('LLEN', KEYS[1]) + 1
return {after, summary, redis.call('LRANGE', KEYS[1], math.max(after + 1, first) - first, upto - first)}
"""

# KEYS: summary meta erased ; ARGV: summary, after, upto, idle ttl (ms), lease token of the turn summarised
_SAVE_SUMMARY = (
    _FENCED
    + """
if redis.call('EXISTS', KEYS[2]) == 0 or fenced(KEYS[3], ARGV[5]) then return 0 end
if tonumber(redis.call('HGET', KEYS[2], 'summary_upto') or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('HSET', KEYS[2], 'summary_upto', ARGV[3])
return 1
"""
)

# KEYS: msgs summary meta users entities ; ARGV: 1 to include the messages, 0 for metadata only
_READ = """
local msgs = {}
if ARGV[1] == '1' then msgs = redis.call('LRANGE', KEYS[1], 0, -1) end
return {redis.call('HGETALL', KEYS[3]), redis.call('SMEMBERS', KEYS[4]), msgs, redis.call('GET', KEYS[2]),
        redis.call('HGETALL', KEYS[5])}
"""

# KEYS: entities meta erased ; ARGV: idle ttl (ms), lease token of the turn the facts come from, then (name, JSON,
# updated) triples. A fact replaces a known one only if it is at least as new.
_SAVE_ENTITIES = (
    _FENCED
    + """
if redis.call('EXISTS', KEYS[2]) == 0 or fenced(KEYS[3], ARGV[2]) then return 0 end
for i = 3, #ARGV, 3 do
  local known = redis.call('HGET', KEYS[1], ARGV[i])
  if (not known) or tonumber(cjson.decode(known)['updated']) <= tonumber(ARGV[i + 2]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: audit users erased [+ the user's session index, on a single node only]
# ARGV: entry JSON, max entries, idle ttl (ms), user, session id, lease token of the calling turn
_APPEND_AUDIT = (
    _FENCED
    + """
if fenced(KEYS[3], ARGV[6]) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'entry', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  if KEYS[4] then
    redis.call('SADD', KEYS[4], ARGV[5])
    redis.call('PEXPIRE', KEYS[4], ARGV[3])
  end
end
return 1
"""
)

# KEYS: msgs summary meta users seen lease fence entities recall audit erased ; ARGV: tombstone ttl (ms)
# Every key goes; the tombstone keeps the last token handed out (or an earlier tombstone's, if higher), which
# _BEGIN hands out tokens above, and the delivery being answered.
_DELETE = """
local held = redis.call('GET', KEYS[6])
local answering = ''
if held then answering = string.sub(held, string.find(held, ':', 1, true) + 1) end
local floor = tonumber(redis.call('GET', KEYS[7]) or '0')
local earlier = redis.call('GET', KEYS[11])
if earlier then
  local sep = string.find(earlier, ':', 1, true)
  floor = math.max(floor, tonumber(string.sub(earlier, 1, sep - 1)))
  if answering == '' then answering = string.sub(earlier, sep + 1) end
end
local removed = redis.call('DEL', unpack(KEYS, 1, 10))
redis.call('SET', KEYS[11], floor .. ':' .. answering, 'PX', ARGV[1])
return removed
"""

# KEYS: meta audit. Whether the session holds anything its users' index must point at.
_HOLDS = """
return redis.call('EXISTS', KEYS[1], KEYS[2])
"""

# KEYS: lease ; ARGV: lease value, lease ttl (ms)
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: lease ; ARGV: lease value
_ABORT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def redis_call(what: str, op: Callable[[], Awaitable[T]]) -> T:
    """``op()``, with redis-py's failures translated to :class:`StoreUnavailable` naming ``what`` failed.

    redis-py's cluster client can turn a cancellation into a connection error; a caller being cancelled gets the
    cancellation, not "the store is down".
    """
    try:
        return await op()
    except (RedisError, OSError) as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from exc
        raise StoreUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def redis_client(
    url: str, *, cluster: bool = False, max_connections: int = REDIS_MAX_CONNECTIONS, **client_options: Any
) -> aioredis.Redis | RedisCluster:
    """A client for ``url`` that rides out a Redis restart.

    A blocking pool: when every connection is busy a caller waits for one (up to ``REDIS_POOL_WAIT_S``) instead of
    failing. After a restart every pooled socket is dead; a command on one fails with a connection error and is
    sent again on a fresh connection, with a short backoff, until the server answers (``REDIS_RETRIES``). Scripts
    are safe to send twice: each one either checks what it already wrote (the lease, the "recorded" marker) or
    writes the same thing again.
    """
    retry = Retry(ExponentialWithJitterBackoff(base=REDIS_RETRY_BASE_S, cap=REDIS_RETRY_CAP_S), REDIS_RETRIES)
    options: dict[str, Any] = {
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "retry": retry,
        "retry_on_error": [ConnectionError, TimeoutError],
    }
    options.update(client_options)
    if cluster or url.startswith(CLUSTER_SCHEME):
        # Every key of a session shares its hash tag, so each script and pipeline stays on one node.
        node_url = "redis://" + url.removeprefix(CLUSTER_SCHEME) if url.startswith(CLUSTER_SCHEME) else url
        options.pop("retry_on_error")
        return RedisCluster.from_url(
            node_url, decode_responses=True, max_connections=REDIS_CLUSTER_NODE_CONNECTIONS, **options
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=max_connections, timeout=REDIS_POOL_WAIT_S, **options
    )
    return aioredis.Redis.from_pool(pool)


def _keys(key: SessionKey) -> list[str]:
    return [key.store_key(part) for part in _PARTS]


def _fields(raw: list[Any] | dict[str, str]) -> dict[str, str]:
    """A hash as a dict: Lua hands HGETALL back as a flat list."""
    return raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))


def _meta(raw: list[Any] | dict[str, str]) -> SessionMeta | None:
    fields = _fields(raw)
    last_active = fields.get("last_active")
    if last_active is None:
        return None
    return SessionMeta(
        created=int(fields.get("created", last_active)) / 1000,
        last_active=int(last_active) / 1000,
        platform=fields.get("platform", ""),
        turns=int(fields.get("turns", 0)),
    )


class RedisStore:
    """Sessions in Redis; two round trips per uncontended turn."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        limits: StoreLimits | None = None,
        codec: MessageCodec | None = None,
    ) -> None:
        self.limits = limits or StoreLimits()
        self._codec = codec or MessageCodec()
        self._client = client
        self._begin = client.register_script(_BEGIN)
        self._commit = client.register_script(_COMMIT)
        self._abort = client.register_script(_ABORT)
        self._renew = client.register_script(_RENEW)
        self._read = client.register_script(_READ)
        self._unsummarized = client.register_script(_UNSUMMARIZED)
        self._save_summary = client.register_script(_SAVE_SUMMARY)
        self._save_entities = client.register_script(_SAVE_ENTITIES)
        self._append_audit = client.register_script(_APPEND_AUDIT)
        self._delete = client.register_script(_DELETE)
        self._holds = client.register_script(_HOLDS)
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        limits: StoreLimits | None = None,
        codec: MessageCodec | None = None,
        max_connections: int = REDIS_MAX_CONNECTIONS,
        cluster: bool = False,
        **client_options: Any,
    ) -> RedisStore:
        """Connect lazily to ``url``: ``redis://``, ``rediss://``, or a cluster (``redis+cluster://``, ``cluster``)."""
        client = redis_client(url, cluster=cluster, max_connections=max_connections, **client_options)
        return cls(client, limits=limits, codec=codec)

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(f"redis {what}", op)

    async def begin_turn(
        self,
        key: SessionKey,
        *,
        event_id: str,
        window: int,
        recall_after: int | None = None,
        fence: int | None = None,
    ) -> TurnStart:
        args: list[str | int] = [
            event_id,
            window,
            int(self.limits.lease_ttl * 1000),
            int(self.limits.idle_ttl * 1000),
            "" if recall_after is None else recall_after,
            "" if fence is None else fence,
        ]
        keys = [*_keys(key), key.store_key("erased")]
        reply = await self._call("begin_turn", lambda: self._begin(keys=keys, args=args))
        status = reply[0]
        if status == "dup":
            return TurnStart(ClaimStatus.DUPLICATE)
        if status == "erased":
            return TurnStart(ClaimStatus.ERASED)
        if status == "inprogress":
            return TurnStart(ClaimStatus.IN_PROGRESS)
        if status == "busy":
            return TurnStart(ClaimStatus.BUSY, retry_after=max(int(reply[1]), 0) / 1000)
        _, token, summary, meta, raw_messages, raw_entities, raw_recall = reply
        fields = _fields(meta)
        context = SessionContext(
            recall=tuple(self._recall_item(m, s) for m, s in zip(raw_recall[::2], raw_recall[1::2], strict=True)),
            messages=tuple(self._codec.decode(m) for m in raw_messages),
            summary=self._summary(summary),
            meta=_meta(fields),
            total=int(fields.get("seq", 0)),
            summary_upto=int(fields.get("summary_upto", 0)),
            entities=self._entities(raw_entities),
            fence=int(token),
        )
        return TurnStart(ClaimStatus.ACQUIRED, Lease(key, int(token), event_id), context)

    async def commit_turn(
        self,
        lease: Lease,
        messages: tuple[StoredMessage, ...],
        *,
        platform: str,
        embedding: TurnEmbedding | None = None,
    ) -> None:
        user = next((m.user for m in messages if m.role == "user" and m.user), "")
        args: list[str | int] = [
            f"{lease.token}:{lease.event_id}",
            lease.event_id,
            int(time.time() * 1000),
            int(self.limits.idle_ttl * 1000),
            self.limits.max_messages,
            int(self.limits.dedupe_ttl * 1000),
            platform,
            user,
            self.limits.max_unsummarized,
            lease.key.id,
            self._recall_member(lease.event_id, embedding) if embedding is not None else "",
            self.limits.max_recall,
            *(self._codec.encode(m) for m in messages),
        ]
        keys = _keys(lease.key)
        index = user_index_key(platform, user) if user else None

        async def commit() -> Any:
            # The user's session index (for erasure without a scan) is written with the turn: inside the
            # script on one node; a cluster keeps it in another slot, so there it is written just before,
            # never missing a session that was saved, and taken back if the save was refused.
            if index is None:
                return await self._commit(keys=keys, args=args)
            if not isinstance(self._client, RedisCluster):
                return await self._commit(keys=[*keys, index], args=args)
            await self._client.sadd(index, lease.key.id)
            await self._client.pexpire(index, int(self.limits.idle_ttl * 1000))
            return await self._written_or_unindexed(lease.key, index, self._commit(keys=keys, args=args))

        written = await self._call("commit_turn", commit)
        if not written:
            raise LeaseLost(f"lease {lease.token} on session {lease.key.id} is no longer held")

    async def _written_or_unindexed(self, key: SessionKey, index: str, write: Awaitable[Any]) -> Any:
        """Run ``write``; if it was refused, take the session out of ``index`` again unless it holds something.

        On a cluster the user's index is written before a turn's save, in another slot. A save refused because
        the session was erased meanwhile must not leave the erased user indexed; a session that has a turn or an
        audit entry stays indexed (another save may just have made it so).
        """
        written = await write
        if not written and not await self._holds(keys=[key.store_key("meta"), key.store_key("audit")]):
            await self._client.srem(index, key.id)
        return written

    async def renew_lease(self, lease: Lease) -> bool:
        args: list[str | int] = [f"{lease.token}:{lease.event_id}", int(self.limits.lease_ttl * 1000)]
        renewed = await self._call("renew_lease", lambda: self._renew(keys=[lease.key.store_key("lease")], args=args))
        return bool(renewed)

    async def abort_turn(self, lease: Lease) -> None:
        value = f"{lease.token}:{lease.event_id}"
        await self._call("abort_turn", lambda: self._abort(keys=[lease.key.store_key("lease")], args=[value]))

    async def unsummarized(self, key: SessionKey, *, upto: int) -> SummaryWork:
        keys = [key.store_key(part) for part in ("msgs", "summary", "meta")]
        after, summary, raw = await self._call("unsummarized", lambda: self._unsummarized(keys=keys, args=[upto]))
        return SummaryWork(self._summary(summary), int(after), tuple(self._codec.decode(m) for m in raw))

    def _summary(self, raw: str | None) -> str | None:
        return None if raw is None else self._codec.unseal_text(raw)

    async def save_summary(self, key: SessionKey, *, summary: str, after: int, upto: int, fence: int = 0) -> bool:
        keys = [key.store_key("summary"), key.store_key("meta"), key.store_key("erased")]
        args: list[str | int] = [self._codec.seal_text(summary), after, upto, int(self.limits.idle_ttl * 1000), fence]
        saved = await self._call("save_summary", lambda: self._save_summary(keys=keys, args=args))
        return bool(saved)

    def _entities(self, raw: list[Any] | dict[str, str]) -> dict[str, Entity]:
        entities = {}
        for name, document in _fields(raw).items():
            stored = Entity.from_json(document)
            entities[name] = Entity(self._codec.unseal_text(stored.value), stored.updated)
        return entities

    async def save_entities(self, key: SessionKey, entities: Entities, *, fence: int = 0) -> None:
        if not entities:
            return
        args: list[str | int | float] = [int(self.limits.idle_ttl * 1000), fence]
        for name, entity in entities.items():
            # Only the value is sealed: the script compares ``updated`` to keep the newest fact.
            sealed = Entity(self._codec.seal_text(entity.value), entity.updated)
            args += [name, sealed.to_json(), entity.updated]
        keys = [key.store_key("entities"), key.store_key("meta"), key.store_key("erased")]
        await self._call("save_entities", lambda: self._save_entities(keys=keys, args=args))

    def _recall_member(self, event_id: str, embedding: TurnEmbedding) -> str:
        # The event id keeps two turns with the same words and answer distinct members of the sorted set.
        vector = self._codec.seal_vector(embedding.vector)
        return json.dumps(
            {
                "event": event_id,
                "model": embedding.model,
                "vector": vector if isinstance(vector, str) else base64.b64encode(vector).decode(),
                "text": self._codec.seal(json.dumps(embedding.text)),
            },
            separators=(",", ":"),
        )

    def _recall_item(self, member: str, score: str | float) -> RecallItem:
        data = json.loads(member)
        text = json.loads(self._codec.unseal(data["text"]))
        stored = str(data["vector"])
        # Base64 has no colon: a vector that is not sealed can never be taken for one that is.
        vector = self._codec.unseal_vector(stored) if ":" in stored else base64.b64decode(stored)
        return RecallItem(int(float(score)), text, vector, str(data["model"]))

    async def recall_items(self, key: SessionKey) -> list[RecallItem]:
        recall = key.store_key("recall")
        rows = cast(
            list[tuple[str, float]],
            await self._call("recall_items", lambda: self._client.zrange(recall, 0, -1, withscores=True)),
        )
        return [self._recall_item(member, score) for member, score in rows]

    async def append_audit(
        self, key: SessionKey, entry: AuditEntry, *, platform: str, user: str, fence: int = 0
    ) -> None:
        keys = [key.store_key("audit"), key.store_key("users"), key.store_key("erased")]
        args: list[str | int] = [
            self._codec.seal(entry.to_json()),
            self.limits.max_audit,
            int(self.limits.idle_ttl * 1000),
            user,
            key.id,
            fence,
        ]
        index = user_index_key(platform, user) if user else None

        async def append() -> Any:
            # As in commit_turn: the user's index in the same script on one node, just before it on a cluster.
            if index is None:
                return await self._append_audit(keys=keys, args=args)
            if not isinstance(self._client, RedisCluster):
                return await self._append_audit(keys=[*keys, index], args=args)
            await self._client.sadd(index, key.id)
            await self._client.pexpire(index, int(self.limits.idle_ttl * 1000))
            return await self._written_or_unindexed(key, index, self._append_audit(keys=keys, args=args))

        await self._call("append_audit", append)

    async def audit(self, key: SessionKey) -> list[AuditEntry]:
        audit = key.store_key("audit")
        rows = cast(list[tuple[str, dict[str, str]]], await self._call("audit", lambda: self._client.xrange(audit)))
        return [AuditEntry.from_json(self._codec.unseal(fields["entry"])) for _, fields in rows]

    async def _read_session(self, key: SessionKey, *, messages: bool) -> list[Any]:
        """Metadata, users, (messages) and summary in one script call: consistent, and one slot on a cluster."""
        keys = [key.store_key(part) for part in ("msgs", "summary", "meta", "users", "entities")]
        reply: list[Any] = await self._call("read", lambda: self._read(keys=keys, args=["1" if messages else "0"]))
        return reply

    async def get(self, key: SessionKey) -> SessionRecord | None:
        raw_meta, users, raw_messages, summary, raw_entities = await self._read_session(key, messages=True)
        meta = _meta(raw_meta)
        if meta is None:
            return None
        return SessionRecord(
            session_id=key.id,
            meta=meta,
            users=tuple(sorted(users)),
            messages=tuple(self._codec.decode(m) for m in raw_messages),
            summary=self._summary(summary),
            entities=self._entities(raw_entities),
        )

    async def list_sessions(self) -> list[SessionRecord]:
        async def scan() -> list[SessionRecord]:
            records = []
            async for meta_key in self._client.scan_iter(match="sb:{*}:meta", count=1000):
                session_id = meta_key[len("sb:{") : -len("}:meta")]
                try:
                    key = SessionKey.parse(session_id)
                except ValueError:
                    continue
                raw_meta, users, _, _, _ = await self._read_session(key, messages=False)
                meta = _meta(raw_meta)
                if meta is not None:
                    records.append(SessionRecord(session_id, meta, tuple(sorted(users)), (), None))
            return sorted(records, key=lambda r: r.meta.last_active, reverse=True)

        return await self._call("list_sessions", scan)

    async def sessions_of_user(self, platform: str, user: str) -> list[str]:
        members = await self._call("sessions_of_user", lambda: self._client.smembers(user_index_key(platform, user)))
        return sorted(str(m) for m in members)

    async def forget_user(self, platform: str, user: str) -> None:
        await self._call("forget_user", lambda: self._client.delete(user_index_key(platform, user)))

    async def delete(self, key: SessionKey) -> bool:
        keys = [*_keys(key), key.store_key("erased")]
        args = [max(int(self.limits.dedupe_ttl * 1000), 1)]
        removed = await self._call("delete", lambda: self._delete(keys=keys, args=args))
        return bool(removed)

    async def sweep(self) -> int:
        return 0

    async def ping(self) -> None:
        await self._call("ping", self._client.ping)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()
