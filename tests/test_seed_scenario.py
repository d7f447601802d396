"""The seed document's demonstration, end to end, on every backend, through the real OpenAI client."""

from __future__ import annotations

from bot.app import build_bot
from bot.memory import SessionStore
from tests.conftest import StoreFactory
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import make_bot, message, openai_model, settings_for


async def test_each_session_remembers_only_its_own_issue(store_factory: StoreFactory, fake_openai: FakeOpenAI) -> None:
    store: SessionStore = store_factory()
    bot = make_bot(store, openai_model(fake_openai.base_url))
    a = dict(channel="session_A", user="alice")
    b = dict(channel="session_B", user="bob")

    await bot.handle(message("My VPN is not working", **a))
    await bot.handle(message("I cannot access email", **b))
    reply_a = await bot.handle(message("What issue did I report?", **a))
    reply_b = await bot.handle(message("What issue did I report?", **b))

    assert reply_a is not None and reply_a.text == "echo: What issue did I report?"
    assert reply_b is not None
    prompt_a, prompt_b = fake_openai.requests[2], fake_openai.requests[3]
    assert [m["role"] for m in prompt_a.messages] == ["system", "user", "assistant", "user"]
    assert prompt_a.messages[1]["content"] == "My VPN is not working"
    assert "email" not in prompt_a.prompt_text()
    assert prompt_b.messages[1]["content"] == "I cannot access email"
    assert "VPN" not in prompt_b.prompt_text()
    await bot.aclose()


async def test_offline_responder_answers_from_each_sessions_memory(store_factory: StoreFactory) -> None:
    store: SessionStore = store_factory()
    bot = build_bot(settings_for(), store=store)
    a = dict(channel="session_A", user="alice")
    b = dict(channel="session_B", user="bob")

    await bot.handle(message("My VPN is not working", **a))
    await bot.handle(message("I cannot access email", **b))
    reply_a = await bot.handle(message("What issue did I report?", **a))
    reply_b = await bot.handle(message("What issue did I report?", **b))
    fresh = await bot.handle(message("What issue did I report?", channel="session_C", user="carol"))

    assert reply_a is not None and reply_b is not None and fresh is not None
    assert "My VPN is not working" in reply_a.text and "email" not in reply_a.text.split("From the help")[0]
    assert "I cannot access email" in reply_b.text and "VPN" not in reply_b.text
    assert "VPN" not in fresh.text and "email" not in fresh.text.lower().split("note: no language model")[0]
    assert "no language model is configured" in fresh.text, "said in a conversation's first reply"
    assert "no language model is configured" not in reply_a.text, "and only there"
    await bot.aclose()
