"""Isolation is sacred: property tests that no session's messages ever reach another session's prompt."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.memory import SessionStore, StoreLimits
from bot.session import Scope, SessionKey
from bot.strategies import BufferStrategy
from tests.conftest import BACKENDS, make_store
from tests.fakes.models import RecordingModel
from tests.helpers import make_bot, message
from tests.redis_server import RedisServer

# Ids that try hard to collide: separators, braces, escapes, the absent marker, unicode.
ids = st.text(alphabet=st.sampled_from(list("ab:{}-%~ 2É漢\ud800")), min_size=1, max_size=4)
optional_ids = st.none() | ids


@given(
    a=st.tuples(st.sampled_from(["slack", "web"]), optional_ids, ids, optional_ids, optional_ids),
    b=st.tuples(st.sampled_from(["slack", "web"]), optional_ids, ids, optional_ids, optional_ids),
)
def test_session_ids_are_injective(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    key_a, key_b = SessionKey(*a), SessionKey(*b)
    assert (key_a.id == key_b.id) == (a == b)
    assert SessionKey.parse(key_a.id) == key_a
    assert key_a.store_key("msgs").count("{") == 1 and key_a.store_key("msgs").count("}") == 1


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("isolation-redis"), appendonly=False)
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


# A conversation plan: (session index, scope-relevant ids) in the order messages arrive.
plans = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2)), min_size=1, max_size=40)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cluster"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans, scope=st.sampled_from(list(Scope)))
def test_concurrent_sessions_see_exactly_their_own_history(
    backend: str,
    plan: list[tuple[int, int]],
    scope: Scope,
    shared_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = uuid.uuid4().hex[:8]  # fresh ids per example, so examples never meet in a shared store
    tmp = tmp_path_factory.mktemp("iso")

    async def scenario() -> None:
        store: SessionStore = make_store(
            backend, tmp_path=Path(tmp), redis_url=shared_redis.url, limits=StoreLimits(max_messages=500)
        )
        model = RecordingModel()
        bot = make_bot(store, model, scope=scope, strategy=BufferStrategy(max_messages=500))
        # Sessions differ by channel, thread and user; under `thread` scope users share a thread.
        msgs = [
            message(
                f"{run}|{s}|{u}|{n}",
                channel=f"{run}:c{s % 3}",
                thread=f"t{s}",
                user=f"u{u}",
            )
            for n, (s, u) in enumerate(plan)
        ]
        await asyncio.gather(*(bot.handle(m) for m in msgs))
        expected: dict[str, list[str]] = {}
        for m in msgs:
            expected.setdefault(bot.session_key(m).id, []).append(m.text)
        assert len(model.prompts) == len(msgs)
        for prompt in model.prompts:
            new = prompt[-1].text
            key = bot.session_key(next(m for m in msgs if m.text == new))
            own = expected[key.id]
            earlier = own[: own.index(new)]
            seen_users = [m.text for m in prompt[1:-1] if m.type == "human"]
            assert seen_users == earlier, "a prompt holds exactly its own session's earlier messages, in order"
            assert [m.text for m in prompt[1:-1] if m.type == "ai"] == [f"reply to {t}" for t in earlier]
        await bot.aclose()
        await store.aclose()

    asyncio.run(scenario())
