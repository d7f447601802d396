"""Session stores: one protocol, three backends, picked by URL in :func:`open_store`."""

from __future__ import annotations

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
    SessionStore,
    StoreLimits,
    SummaryWork,
    TurnEmbedding,
    TurnStart,
)
from bot.memory.codec import MessageCodec

__all__ = [
    "AuditEntry",
    "ClaimStatus",
    "Entities",
    "Entity",
    "Lease",
    "RecallItem",
    "SessionContext",
    "SessionMeta",
    "SessionRecord",
    "SessionStore",
    "StoreLimits",
    "SummaryWork",
    "TurnEmbedding",
    "TurnStart",
    "open_store",
]


def open_store(
    url: str, *, limits: StoreLimits | None = None, redis_cluster: bool = False, codec: MessageCodec | None = None
) -> SessionStore:
    """The store ``url`` names: ``memory://``, ``sqlite:///path.db``, ``redis://…``, ``rediss://…`` or
    ``redis+cluster://…`` (``redis_cluster`` treats a ``redis://`` URL as a cluster node too).

    Raises:
        ValueError: the scheme is not one of those.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from bot.memory.memory import MemoryStore

        return MemoryStore(limits=limits)  # in-process only: nothing is at rest to encrypt
    if scheme == "sqlite":
        from bot.memory.sqlite import SqliteStore, sqlite_path

        return SqliteStore(sqlite_path(url), limits=limits, codec=codec)
    if scheme in ("redis", "rediss", "unix", "redis+cluster"):
        from bot.memory.redis import RedisStore

        return RedisStore.from_url(url, limits=limits, cluster=redis_cluster, codec=codec)
    raise ValueError(
        f"unsupported store URL scheme {scheme or url!r}: use memory://, sqlite:///path.db, redis:// or redis+cluster://"
    )
