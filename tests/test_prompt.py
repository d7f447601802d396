"""The prompt: knowledge-base passages for the model, and a token budget that drops the least valuable parts."""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import count_tokens_approximately

from bot.app import build_bot
from bot.memory import SessionContext
from bot.memory.memory import MemoryStore
from bot.messages import StoredMessage
from bot.recall import RecalledTurn
from bot.strategies import RECALL_HEADER, BufferStrategy, Snippet, build_prompt
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import message, settings_for

HISTORY = tuple(
    StoredMessage("user" if i % 2 == 0 else "assistant", f"message {i} " + "padding " * 40, float(i)) for i in range(12)
)
SNIPPETS = [Snippet(f"Article {i}", f"Part {i}", "steps " * 80, score=float(10 - i)) for i in range(3)]
RECALLED = [RecalledTurn(seq=i, text=f"User: recalled {i} " + "detail " * 30, score=1.0 - i / 10) for i in range(3)]


def prompt_with(max_tokens: int | None = None, *, recalled: list[RecalledTurn] | None = None) -> list[BaseMessage]:
    return build_prompt(
        system_prompt="SYSTEM",
        context=SessionContext(messages=HISTORY, summary="the VPN was fixed last week"),
        text="NEW",
        strategy=BufferStrategy(max_messages=100),
        snippets=SNIPPETS,
        recalled=recalled or [],
        max_tokens=max_tokens,
    )


def test_without_a_budget_everything_is_in_order() -> None:
    prompt = prompt_with()
    assert prompt[0].text == "SYSTEM" and prompt[-1].text == "NEW"
    assert prompt[1].text.startswith("Summary of the earlier conversation")
    assert prompt[2].text.startswith("Help articles") and "### Article 0 — Part 0" in prompt[2].text
    assert len(prompt) == 3 + len(HISTORY) + 1


def test_the_budget_drops_snippets_then_old_messages_then_the_summary_never_the_new_message() -> None:
    full = prompt_with()
    previous = full
    for budget in [count_tokens_approximately(full) - 1, 1_000, 400, 150, 10]:
        prompt = prompt_with(budget)
        assert prompt[0].text == "SYSTEM" and prompt[-1].text == "NEW"
        assert len(prompt) <= len(previous)
        if budget >= 150:
            assert count_tokens_approximately(prompt) <= budget
        previous = prompt
    mid = prompt_with(1_000)
    texts = "\n".join(m.text for m in mid)
    assert "Help articles" not in texts, "snippets go first"
    assert "Summary of the earlier conversation" in texts, "the summary outlives old messages"
    assert "message 11" in texts and "message 0 " not in texts, "the newest messages stay"
    assert mid[2].type == "human", "the window still starts with a question"


def test_recalled_turns_go_after_the_snippets_least_similar_first_and_before_the_window() -> None:
    full = prompt_with(recalled=RECALLED)
    assert full[2].text.startswith(RECALL_HEADER)
    assert full[2].text.index("recalled 0") < full[2].text.index("recalled 2"), "shown in conversation order"
    snippets_gone = count_tokens_approximately(full) - count_tokens_approximately([full[3]])
    texts = "\n".join(m.text for m in prompt_with(snippets_gone, recalled=RECALLED))
    assert "Help articles" not in texts and "recalled 2" in texts, "snippets go before recalled turns"
    one_less = snippets_gone - 10
    texts = "\n".join(m.text for m in prompt_with(one_less, recalled=RECALLED))
    assert "recalled 0" in texts and "recalled 2" not in texts, "the least similar recalled turn goes next"
    assert "message 0 " in texts, "and only then old messages of the window"
    tight = prompt_with(400, recalled=RECALLED)
    assert RECALL_HEADER not in "\n".join(m.text for m in tight) and tight[-1].text == "NEW"


async def test_a_model_gets_the_relevant_article_with_its_title(fake_openai: FakeOpenAI) -> None:
    settings = settings_for(fake_openai.base_url, SUPPORTBOT_MEMORY__STORE_URL="memory://")
    bot = build_bot(settings, store=MemoryStore())
    await bot.handle(message("my VPN keeps disconnecting every few minutes"))
    system = [m["content"] for m in fake_openai.requests[0].messages if m["role"] == "system"]
    assert any("### VPN not connecting or dropping" in text for text in system)
    await bot.aclose()

    off = settings_for(fake_openai.base_url, SUPPORTBOT_KB__IN_PROMPT="false")
    bot = build_bot(off, store=MemoryStore())
    await bot.handle(message("my VPN keeps disconnecting every few minutes"))
    assert [m["role"] for m in fake_openai.requests[1].messages] == ["system", "user"]
    await bot.aclose()
