"""The rolling summary: folded after the reply, idempotent, and no message ever falls between window and summary."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.core import SupportBot
from bot.memory import SessionStore, StoreLimits
from bot.strategies import WindowStrategy
from bot.summary import ExtractiveSummarizer, ModelSummarizer
from tests.conftest import StoreFactory
from tests.fakes.models import RecordingModel
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import make_bot, message, openai_model, settle

WINDOW = 6


def summarising_bot(store: SessionStore, model: Any, summarizer: Any = None) -> SupportBot:
    return make_bot(
        store,
        model,
        strategy=WindowStrategy(k=WINDOW, max_tokens=100_000),
        summarizer=summarizer or ExtractiveSummarizer(),
    )


def covered(prompt: list[Any], earlier: list[str]) -> list[str]:
    """The earlier user messages a prompt holds neither in its window nor in its summary."""
    summary = next((m.text for m in prompt if m.type == "system" and m.text.startswith("Summary")), "")
    window = {m.text for m in prompt[1:-1] if m.type == "human"}
    return [text for text in earlier if text not in window and text not in summary]


async def test_every_earlier_message_is_in_the_window_or_the_summary(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(max_messages=8, max_unsummarized=40))
    model = RecordingModel()
    bot = summarising_bot(store, model)
    said = []
    for n in range(25):
        said.append(f"problem number {n}")
        await bot.handle(message(said[-1]))
        await settle(bot)
        assert covered(model.prompts[-1], said[:-1]) == []
    key = bot.session_key(message("x"))
    record = await store.get(key)
    assert record is not None and record.summary is not None and "problem number 0" in record.summary
    assert len(record.messages) < 2 * 25, "summarised messages are trimmed from storage"
    assert any(m.type == "system" and m.text.startswith("Summary") for m in model.prompts[-1])
    await bot.aclose()


async def test_folds_under_concurrent_turns_lose_nothing(store_factory: StoreFactory) -> None:
    store = store_factory(StoreLimits(max_messages=8, max_unsummarized=200))
    model = RecordingModel(delay=0.005)
    bot = summarising_bot(store, model)
    said = [f"concurrent issue {n}" for n in range(40)]
    await asyncio.gather(*(bot.handle(message(text)) for text in said))
    await settle(bot)
    await bot.handle(message("final question"))
    await settle(bot)
    assert covered(model.prompts[-1], said) == []
    await bot.aclose()


async def test_the_model_writes_the_summary_and_a_failed_fold_is_retried(
    store_factory: StoreFactory, fake_openai: FakeOpenAI
) -> None:
    folds = 0

    def responder(messages: list[dict[str, Any]]) -> str:
        nonlocal folds
        if "running summary" in str(messages[0].get("content")):
            folds += 1
            return f"SUMMARY #{folds}"
        return f"echo: {messages[-1]['content']}"

    fake_openai.responder = responder
    store = store_factory(StoreLimits(max_messages=8, max_unsummarized=40))
    chat = openai_model(fake_openai.base_url)
    bot = summarising_bot(store, chat, ModelSummarizer(chat.model))
    for n in range(3):
        await bot.handle(message(f"turn {n}"))
        await settle(bot)
    # The next two model calls fail: turn 3 gets the polite fallback, and a fold due then fails too;
    # later turns fold again.
    fake_openai.fail_next("500", times=2)
    await bot.handle(message("turn 3"))
    await settle(bot)
    for n in range(4, 7):
        await bot.handle(message(f"turn {n}"))
        await settle(bot)
    record = await store.get(bot.session_key(message("x")))
    assert record is not None and record.summary is not None and record.summary.startswith("SUMMARY #")
    last_prompt = fake_openai.requests[-1].messages
    if "running summary" in str(last_prompt[0]["content"]):
        last_prompt = fake_openai.requests[-2].messages
    assert any(str(m["content"]).startswith("Summary of the earlier conversation:\nSUMMARY #") for m in last_prompt)
    await bot.aclose()


async def test_the_offline_summary_keeps_concrete_points_when_it_is_full() -> None:
    from bot.messages import StoredMessage
    from bot.summary import EXTRACT_MAX_CHARS, ExtractiveSummarizer

    said = [StoredMessage("user", "My laptop's asset tag is ZX-4471", 1.0)]
    said += [
        StoredMessage("user", f"thanks, that sort of worked, but something else is odd now {'.' * i}", 2.0)
        for i in range(40)
    ]
    said += [StoredMessage("user", "Outlook says error 0x800488ee", 3.0)]
    summary = await ExtractiveSummarizer().fold(None, said)
    assert len(summary) <= EXTRACT_MAX_CHARS + len("Earlier, the user said:\n")
    lines = summary.splitlines()[1:]
    assert lines[0] == "- My laptop's asset tag is ZX-4471" and lines[-1] == "- Outlook says error 0x800488ee"
    assert "something else is odd now " + "." * 39 in summary, "the newest vague points stay while there is room"
    assert "something else is odd now \n" not in summary + "\n", "the oldest vague ones went first"
    again = await ExtractiveSummarizer().fold(summary, [StoredMessage("user", "new problem: VPN 809", 4.0)])
    assert "ZX-4471" in again and again.endswith("- new problem: VPN 809")
