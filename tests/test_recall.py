"""Vector recall: a fact said long ago comes back when it matters, and only ever from its own session."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import build_bot
from bot.embeddings import HashingEmbeddings, MiniLMEmbeddings, build_embeddings, minilm_available
from bot.errors import ConfigError
from bot.memory import StoreLimits
from bot.recall import Recall
from bot.session import Scope
from bot.strategies import WindowStrategy
from tests.conftest import StoreFactory, make_store
from tests.fakes.models import RecordingModel
from tests.fakes.openai_server import FakeOpenAI, fake_embedding
from tests.helpers import make_bot, message, settings_for, settle
from tests.redis_server import RedisServer

WINDOW = 10  # messages: five turns

FILLER = [
    "How do I map the shared drive on my laptop?",
    "Outlook keeps asking for my password, what now?",
    "The printer on the third floor shows a paper jam.",
    "Can I get Adobe Acrobat installed?",
    "My second monitor stays black after docking.",
    "How do I set up multi-factor authentication on a new phone?",
    "Teams calls drop every few minutes.",
    "Where do I find the guest Wi-Fi password?",
    "My keyboard types the wrong characters.",
    "How do I request access to the finance share?",
]


def recalled_block(prompt: list[object]) -> str:
    return next(
        (m.text for m in prompt if m.type == "system" and m.text.startswith("Earlier in this conversation")),  # type: ignore[attr-defined]
        "",
    )


def recall_for(**options: object) -> Recall:
    return Recall(embeddings=HashingEmbeddings(), model_name="hashing-test", **options)  # type: ignore[arg-type]


async def test_hashing_embeddings_match_shared_words_and_are_deterministic() -> None:
    embeddings = HashingEmbeddings()
    fact, question, other = await embeddings.aembed_documents(
        ["My laptop's asset tag is ZX-4471", "What was my asset tag again?", "The printer on floor 3 jams"]
    )
    assert np.dot(fact, question) > 0.3 > np.dot(other, question)
    assert await embeddings.aembed_query("My laptop's asset tag is ZX-4471") == fact
    assert np.isclose(np.linalg.norm(fact), 1.0)
    assert not any(await embeddings.aembed_query("the and of"))  # nothing but stopwords: a zero vector


async def test_a_fact_from_50_turns_ago_is_recalled_and_the_window_no_longer_holds_it(
    store_factory: StoreFactory,
) -> None:
    store = store_factory(limits=StoreLimits(max_messages=40))
    model = RecordingModel()
    bot = make_bot(store, model, strategy=WindowStrategy(k=WINDOW, max_tokens=10_000), recall=recall_for())
    other_user = message("My laptop asset tag is QQ-9999, remember it", user="U2")
    await bot.handle(other_user)
    await bot.handle(message("My laptop asset tag is ZX-4471, remember it"))
    await settle(bot)
    for n in range(50):
        await bot.handle(message(FILLER[n % len(FILLER)]))
        await settle(bot)
    await bot.handle(message("What is the asset tag of my laptop?"))

    prompt = model.prompts[-1]
    window = " ".join(m.text for m in prompt[1:-1] if m.type != "system")
    assert "ZX-4471" not in window, "the fact is long out of the window (and trimmed from the messages)"
    record = await store.get(bot.session_key(message("x")))
    assert record is not None and not any("ZX-4471" in m.content for m in record.messages)
    block = recalled_block(prompt)
    assert "ZX-4471" in block, "recall brings it back"
    assert "QQ-9999" not in " ".join(m.text for m in prompt), "never another session's fact"
    assert bot.metrics.recalled_turns._value.get() >= 1
    await bot.aclose()


async def test_recall_skips_turns_still_in_the_window_and_unrelated_ones(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    bot = make_bot(store, model, strategy=WindowStrategy(k=WINDOW, max_tokens=10_000), recall=recall_for())
    for text in ["My VPN client is GlobalProtect 6.1", *FILLER[:3]]:
        await bot.handle(message(text))
        await settle(bot)
    await bot.handle(message("Which VPN client version do I have?"))
    assert recalled_block(model.prompts[-1]) == "", "everything said is still in the window: nothing to recall"
    for text in FILLER[3:]:
        await bot.handle(message(text))
        await settle(bot)
    await bot.handle(message("Which VPN client version do I have?"))
    block = recalled_block(model.prompts[-1])
    assert "GlobalProtect 6.1" in block and "Adobe" not in block, "only what is similar enough comes back"
    await bot.aclose()


async def test_recall_is_skipped_not_fatal_when_the_embedding_model_fails(store_factory: StoreFactory) -> None:
    class Broken(HashingEmbeddings):
        async def aembed_query(self, text: str) -> list[float]:
            raise RuntimeError("embedding server is down")

    store = store_factory()
    model = RecordingModel()
    recall = Recall(embeddings=Broken(), model_name="broken")
    bot = make_bot(store, model, strategy=WindowStrategy(k=2, max_tokens=10_000), recall=recall)
    for text in FILLER[:4]:
        reply = await bot.handle(message(text))
        assert reply is not None and reply.text == f"reply to {text}"
        await settle(bot)
    assert bot.metrics.errors.labels("embedding")._value.get() >= 4
    await bot.aclose()


async def test_vectors_of_another_embedding_model_are_not_compared(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    old = make_bot(store, model, strategy=WindowStrategy(k=2, max_tokens=10_000), recall=recall_for())
    for text in ["My office is in Leeds, 4th floor", *FILLER[:3]]:
        await old.handle(message(text))
        await settle(old)
    await old.aclose()
    other_model = Recall(embeddings=HashingEmbeddings(dims=1_024), model_name="another-model")
    new = make_bot(store, model, strategy=WindowStrategy(k=2, max_tokens=10_000), recall=other_model)
    await new.handle(message("Which office am I in? Leeds?"))
    assert recalled_block(model.prompts[-1]) == ""
    await new.aclose()


async def test_openai_embeddings_run_against_the_configured_endpoint(tmp_path: Path) -> None:
    async with FakeOpenAI() as fake:
        settings = settings_for(
            fake.base_url,
            SUPPORTBOT_MEMORY__EMBEDDINGS="openai",
            SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
            SUPPORTBOT_MEMORY__WINDOW_MESSAGES="4",
            SUPPORTBOT_MEMORY__RECALL_MIN_SCORE="0.5",
            SUPPORTBOT_MEMORY__ENTITIES="false",
            SUPPORTBOT_MEMORY__SUMMARY="false",
        )
        embedding = build_embeddings(settings)
        assert embedding.name == "openai:text-embedding-3-small"
        vector = await embedding.embeddings.aembed_query("printer jam floor 3")
        assert np.allclose(vector, fake_embedding("printer jam floor 3", fake.embedding_dims), atol=1e-6)
        for resource in embedding.resources:
            await resource.aclose()

        bot = build_bot(settings)
        for text in ["my badge number is 7781 badge", *FILLER[:3]]:
            await bot.handle(message(text))
            await settle(bot)
        await bot.handle(message("what is my badge number"))
        prompt = fake.requests[-1].prompt_text()
        assert "7781" in prompt and "Earlier in this conversation" in prompt
        assert ["what is my badge number"] in fake.embedding_requests
        await bot.aclose()
        await bot.store.aclose()


def test_auto_picks_openai_then_minilm_then_hashing() -> None:
    assert build_embeddings(
        settings_for("http://127.0.0.1:9/v1", SUPPORTBOT_MEMORY__EMBEDDINGS="auto")
    ).name.startswith("openai:")
    offline = build_embeddings(settings_for(SUPPORTBOT_MEMORY__EMBEDDINGS="auto"))
    assert offline.name == ("all-MiniLM-L6-v2" if minilm_available() else "hashing-1024")
    if not minilm_available():
        with pytest.raises(ConfigError, match="recall extra"):
            build_embeddings(settings_for(SUPPORTBOT_MEMORY__EMBEDDINGS="minilm"))


async def test_the_local_model_recalls_by_meaning_not_just_words(
    store_factory: StoreFactory, minilm: MiniLMEmbeddings
) -> None:
    store = store_factory()
    model = RecordingModel()
    recall = Recall(embeddings=minilm, model_name="all-MiniLM-L6-v2", k=1, min_score=0.2)
    # What is under test is recall by meaning, not the CPU's speed: the turn waits for every embedding.
    bot = make_bot(
        store, model, strategy=WindowStrategy(k=WINDOW, max_tokens=10_000), recall=recall, embedding_wait=3600
    )
    await bot.handle(message("I work from the Leeds office, fourth floor, desk 12"))
    await bot.handle(message("I work from the Leeds office, fourth floor, desk 12", user="U2"))
    await settle(bot)
    for text in FILLER:
        await bot.handle(message(text))
        await settle(bot)
    await bot.handle(message("Where am I located?"))  # shares no content word with the fact
    assert "Leeds" in recalled_block(model.prompts[-1])
    await bot.aclose()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("recall-redis"), appendonly=False)
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


plans = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1)), min_size=1, max_size=30)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans, scope=st.sampled_from(list(Scope)))
def test_recall_brings_back_exactly_the_sessions_own_turns_that_left_the_window(
    backend: str,
    plan: list[tuple[int, int]],
    scope: Scope,
    shared_redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("recall-iso")

    async def scenario() -> None:
        store = make_store(backend, tmp_path=Path(tmp), redis_url=shared_redis.url, limits=StoreLimits())
        model = RecordingModel()
        # Every earlier turn out of the window is similar enough, so recall must return all of them (up to k),
        # and the property is exact: own turns, all of them, nothing else.
        recall = recall_for(k=100, min_score=-1.0)
        bot = make_bot(store, model, scope=scope, strategy=WindowStrategy(k=2, max_tokens=10_000), recall=recall)
        msgs = [
            message(f"ticket {run} {s} {u} {n}", channel=f"{run}:c{s % 3}", thread=f"t{s}", user=f"u{u}")
            for n, (s, u) in enumerate(plan)
        ]
        earlier: dict[str, list[str]] = {}
        for m in msgs:
            await bot.handle(m)
            await settle(bot)
            prompt = model.prompts[-1]
            own = earlier.setdefault(bot.session_key(m).id, [])
            recalled = [line.removeprefix("User: ") for line in recalled_block(prompt).splitlines()[2:]]
            recalled = [line for line in recalled if line and not line.startswith("Assistant:")]
            assert sorted(recalled) == sorted(own[:-1]), "exactly this session's turns that left the window"
            own.append(m.text)
        await bot.aclose()
        await store.aclose()

    asyncio.run(scenario())


async def test_the_offline_responder_quotes_recalled_turns(tmp_path: Path) -> None:
    settings = settings_for(
        SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
        SUPPORTBOT_MEMORY__WINDOW_MESSAGES="4",
        SUPPORTBOT_RATE_LIMIT__MESSAGES="0",
    )
    bot = build_bot(settings)
    await bot.handle(message("My laptop asset tag is ZX-4471"))
    for text in FILLER[:5]:
        await bot.handle(message(text))
        await settle(bot)
    reply = await bot.handle(message("What did I say my laptop asset tag was?"))
    assert reply is not None and "ZX-4471" in reply.text
    await bot.aclose()
    await bot.store.aclose()


async def test_the_offline_responder_finds_the_earlier_message_a_question_is_about(tmp_path: Path) -> None:
    bot = build_bot(settings_for(SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db"))
    await bot.handle(message("My laptop asset tag is ZX-4471"))
    for text in FILLER[:5]:  # all still in the window, but more than the last three
        await bot.handle(message(text))
    reply = await bot.handle(message("What did I say my laptop asset tag was?"))
    assert reply is not None and "Earlier you told me:\n- “My laptop asset tag is ZX-4471”" in reply.text
    await settle(bot)
    await bot.aclose()
    await bot.store.aclose()


async def test_a_slow_embedding_model_does_not_hold_the_reply_back(store_factory: StoreFactory) -> None:
    never = asyncio.Event()

    class Stuck(HashingEmbeddings):
        async def aembed_query(self, text: str) -> list[float]:
            await never.wait()  # an embedding endpoint that never answers
            return await super().aembed_query(text)

    store = store_factory()
    model = RecordingModel()
    bot = make_bot(
        store,
        model,
        strategy=WindowStrategy(k=2, max_tokens=10_000),
        recall=Recall(embeddings=Stuck(), model_name="stuck"),
        embedding_wait=0.05,
    )
    for text in FILLER[:3]:
        reply = await bot.handle(message(text))
        assert reply is not None and reply.text == f"reply to {text}"
    record = await store.get(bot.session_key(message("x")))
    assert record is not None and len(record.messages) == 6, "every turn is stored, without its vector"
    assert await store.recall_items(bot.session_key(message("x"))) == []
    assert bot.metrics.errors.labels("embedding")._value.get() >= 3
    await bot.aclose(grace=0.1)


async def test_a_cached_recall_never_outlives_an_erased_session(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    first = make_bot(store, model, strategy=WindowStrategy(k=2, max_tokens=10_000), recall=recall_for(min_score=-1.0))
    other = make_bot(store, model, strategy=WindowStrategy(k=2, max_tokens=10_000), recall=recall_for(min_score=-1.0))
    for text in ["my old asset tag is ZX-4471", *FILLER[:3]]:
        await first.handle(message(text))
    assert "ZX-4471" in recalled_block(model.prompts[-1]), "the first process now holds it in its cache"
    key = first.session_key(message("x"))
    await store.delete(key)  # erased; then the same conversation starts again, served by another process
    for text in ["my new asset tag is QQ-9999", *FILLER[3:6]]:
        await other.handle(message(text))
    await first.handle(message("what is my asset tag?"))
    block = recalled_block(model.prompts[-1])
    assert "ZX-4471" not in block and "QQ-9999" in block, "the new session's turns, read whole; none of the old"
    await first.aclose()
    await other.aclose()


async def test_a_turn_does_not_wait_for_a_local_model_still_loading(store_factory: StoreFactory) -> None:
    loaded = asyncio.Event()

    class Loading(HashingEmbeddings):
        """Like MiniLMEmbeddings while `serve` or `chat` loads it in the background."""

        loading = True

        async def aembed_query(self, text: str) -> list[float]:
            await loaded.wait()
            self.loading = False
            return await super().aembed_query(text)

    embeddings = Loading()
    recall = Recall(embeddings=embeddings, model_name="loading")
    warm_up = asyncio.create_task(embeddings.aembed_query("warm up"))
    store = store_factory()
    bot = make_bot(store, RecordingModel(), strategy=WindowStrategy(k=2, max_tokens=10_000), recall=recall)
    reply = await bot.handle(message("my VPN drops"))  # the default wait would be 5 s; it does not wait at all
    assert reply is not None and reply.text == "reply to my VPN drops"
    assert not warm_up.done() and bot.metrics.errors.labels("embedding")._value.get() == 0, "skipped, not failed"
    loaded.set()
    await warm_up
    await bot.handle(message("my printer jams"))
    assert [i.text.splitlines()[0] for i in await store.recall_items(bot.session_key(message("x")))] == [
        "User: my printer jams"
    ], "once loaded, turns are embedded again"
    await bot.aclose()
