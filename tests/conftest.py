from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import hypothesis
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, ConnectionPool

from bot.embeddings import MiniLMEmbeddings, minilm_available
from bot.memory import SessionStore, StoreLimits
from bot.memory.codec import MessageCodec
from bot.memory.memory import MemoryStore
from bot.memory.redis import RedisStore
from bot.memory.sqlite import SqliteStore
from tests.fakes.openai_server import FakeOpenAI
from tests.redis_cluster import RedisClusterServers
from tests.redis_server import RedisServer

BACKENDS = ("memory", "sqlite", "redis", "cluster")

# Hypothesis fails an example that runs slower than 200 ms once; on a busy CI machine that says nothing about
# the code, so no property test has a per-example deadline.
hypothesis.settings.register_profile("supportbot", deadline=None)
hypothesis.settings.load_profile("supportbot")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server shared by the session; each test starts from an empty database."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A private three-master Redis Cluster shared by the session."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServers) -> str:
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url


class CountingConnection(Connection):
    """redis-py's own connection, counting what it sends: one send is one round trip."""

    sends = 0

    async def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)  # type: ignore[arg-type]


def counting_client(url: str) -> tuple[aioredis.Redis, type[CountingConnection]]:
    """A client on ``url`` whose round trips are counted in the returned class's ``sends``."""
    counter = type("Counter", (CountingConnection,), {"sends": 0})
    pool = ConnectionPool.from_url(url, connection_class=counter, decode_responses=True)
    return aioredis.Redis.from_pool(pool), counter


def make_store(
    backend: str, *, tmp_path: Path, redis_url: str | None, limits: StoreLimits, codec: MessageCodec | None = None
) -> SessionStore:
    if backend == "memory":
        return MemoryStore(limits=limits)
    if backend == "sqlite":
        return SqliteStore(str(tmp_path / "sessions.db"), limits=limits, codec=codec)
    assert redis_url is not None, f"the {backend} backend needs a server URL"
    return RedisStore.from_url(redis_url, limits=limits, codec=codec)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


StoreFactory = Callable[..., SessionStore]


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Builds stores of the parametrised backend, closed at teardown.

    Two sqlite or redis stores from one factory see the same data (two processes' worth of clients);
    memory stores share nothing, so tests that need a second client reuse the first memory store.
    """
    url = {"redis": "redis_url", "cluster": "cluster_url"}.get(backend)
    url = request.getfixturevalue(url) if url else None
    made: list[SessionStore] = []

    def factory(limits: StoreLimits | None = None) -> SessionStore:
        store = make_store(backend, tmp_path=tmp_path, redis_url=url, limits=limits or StoreLimits())
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()


def second_client(backend: str, factory: StoreFactory, first: SessionStore) -> SessionStore:
    """Another client on ``first``'s data: a new connection where the backend has one, else the same store."""
    return first if backend == "memory" else factory(first.limits)


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbeddings:
    """The local embedding model, loaded once before any test's clock starts (loading takes seconds on a busy CPU,
    as it does when ``serve`` warms it up at start)."""
    if not minilm_available():
        pytest.skip("needs the recall extra (make test installs it)")
    model = MiniLMEmbeddings()
    model.embed_query("warm up")
    return model


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake
