"""The durable inbox: every accepted message is recorded here before its platform is acknowledged, and stays
until its turn has been answered. One protocol, three backends beside the stores they share a URL with, and the
worker loop that answers what they hold.
"""

from __future__ import annotations

from bot.inbox.base import Delivery, Inbox, InboxCounters, InboxStats, PendingEntry, Route
from bot.inbox.worker import Attempt, Handler, InboxWorker
from bot.memory.codec import MessageCodec

__all__ = [
    "Attempt",
    "Delivery",
    "Handler",
    "Inbox",
    "InboxCounters",
    "InboxStats",
    "InboxWorker",
    "PendingEntry",
    "Route",
    "open_inbox",
]


def open_inbox(
    url: str,
    *,
    consumer: str,
    codec: MessageCodec | None = None,
    redis_cluster: bool = False,
    visibility: float,
    dedupe_ttl: float,
    shards: int,
) -> Inbox:
    """The inbox beside the store ``url`` names: a table in the same SQLite file, streams on the same Redis, or an
    in-process one for ``memory://`` (and ``sqlite:///:memory:``).

    Raises:
        ValueError: the scheme is not one the stores know.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from bot.inbox.memory import MemoryInbox

        return MemoryInbox(consumer=consumer, visibility=visibility, dedupe_ttl=dedupe_ttl)
    if scheme == "sqlite":
        from bot.memory.sqlite import sqlite_path

        path = sqlite_path(url)
        if path == ":memory:":
            from bot.inbox.memory import MemoryInbox

            return MemoryInbox(consumer=consumer, visibility=visibility, dedupe_ttl=dedupe_ttl)
        from bot.inbox.sqlite import SqliteInbox

        return SqliteInbox(path, consumer=consumer, codec=codec, visibility=visibility, dedupe_ttl=dedupe_ttl)
    if scheme in ("redis", "rediss", "unix", "redis+cluster"):
        from bot.inbox.redis import RedisInbox
        from bot.memory.redis import redis_client

        client = redis_client(url, cluster=redis_cluster, max_connections=shards + 16)
        return RedisInbox(
            client, consumer=consumer, codec=codec, shards=shards, visibility=visibility, dedupe_ttl=dedupe_ttl
        )
    raise ValueError(f"unsupported store URL scheme {scheme or url!r} for the inbox")
