"""Entity memory: facts about the user's environment, extracted after each turn, newest first, in the prompt."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.entities import ModelEntityExtractor, RuleEntityExtractor
from bot.export import recap, session_document
from bot.memory.memory import MemoryStore
from tests.conftest import StoreFactory
from tests.fakes.models import RecordingModel
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import make_bot, message, openai_model, settle


async def test_the_offline_patterns_find_what_helpdesk_users_say() -> None:
    facts = await RuleEntityExtractor().extract(
        "On my ThinkPad with Windows 11, GlobalProtect fails with error 0x80070005 in the Berlin office; "
        "ticket INC0012345 is open"
    )
    assert facts == {
        "os": "Windows 11",
        "vpn_client": "GlobalProtect",
        "device": "ThinkPad",
        "error_code": "0x80070005",
        "ticket": "INC0012345",
        "location": "Berlin office",
    }
    assert await RuleEntityExtractor().extract("what did I say?") == {}


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("My laptop asset tag is ZX-4471", {"asset_tag": "ZX-4471"}),
        ("Asset number: 99812", {"asset_tag": "99812"}),
        ("my computer name is WS1234.corp.example.com.", {"hostname": "WS1234.corp.example.com"}),
        ("please send it to printer PRN-3F-EAST", {"printer": "PRN-3F-EAST"}),
        ("my desk phone is ext. 2231", {"phone_extension": "2231"}),
        ("I sit at desk 4B-12 near the window", {"desk": "4B-12"}),
        ("Cisco AnyConnect version 4.10.05095 crashes", {"vpn_client": "Cisco AnyConnect version 4.10.05095"}),
        # Labels without an identifier are ordinary words.
        ("the printer is broken, ask the service desk about asset management", {}),
        ("I'm at my desk now; I have an extension cord", {}),
    ],
)
async def test_identifiers_need_a_label_and_a_digit(text: str, facts: dict[str, str]) -> None:
    assert await RuleEntityExtractor().extract(text) == facts


async def test_error_codes_and_tickets_accumulate_while_other_facts_are_replaced(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    bot = make_bot(store, model, extractor=RuleEntityExtractor())
    for text in [
        "Outlook shows error 0x80070005 on Windows 10",
        "now Teams says error 0x800488ee",
        "and again 0x80070005, ticket INC0012345; I moved to Windows 11",
        "also error 0xCAA70004 and 0x8004de40",
        "done",
    ]:
        await bot.handle(message(text))
        await settle(bot)
    record = await store.get(bot.session_key(message("x")))
    assert record is not None
    assert record.entities["error_code"].value == "0x800488ee; 0x80070005; 0xCAA70004", "a repeat moves last"
    assert record.entities["os"].value == "Windows 11"
    assert record.entities["ticket"].value == "INC0012345"
    await bot.aclose()


async def test_newer_facts_replace_older_ones_and_reach_the_prompt(store_factory: StoreFactory) -> None:
    store = store_factory()
    model = RecordingModel()
    bot = make_bot(store, model, extractor=RuleEntityExtractor())
    await bot.handle(message("VPN drops on Windows 10"))
    await settle(bot)
    await bot.handle(message("I upgraded to Windows 11, now using GlobalProtect"))
    await settle(bot)
    await bot.handle(message("still broken"))
    await settle(bot)
    system = model.prompts[-1][0].text
    assert "- os: Windows 11" in system and "Windows 10" not in system and "- vpn client: GlobalProtect" in system
    other = await bot.handle(message("hello", user="someone-else"))
    assert other is not None
    assert "Known about the user's environment" not in model.prompts[-1][0].text, "facts stay in their session"
    record = await store.get(bot.session_key(message("x")))
    assert record is not None
    assert session_document(record)["entities"]["os"]["value"] == "Windows 11"
    assert "os: Windows 11" in recap(record)
    await bot.aclose()


async def test_the_model_extracts_facts_as_structured_output(fake_openai: FakeOpenAI) -> None:
    def responder(messages: list[dict[str, Any]]) -> str:
        if "Extract facts" in str(messages[0].get("content")):
            return json.dumps({"os": "macOS 14", "application": "Outlook", "application_version": "16.80"})
        return f"echo: {messages[-1]['content']}"

    fake_openai.responder = responder
    chat = openai_model(fake_openai.base_url)
    bot = make_bot(MemoryStore(), chat, extractor=ModelEntityExtractor(chat.model))
    await bot.handle(message("Outlook 16.80 crashes on my Mac running Sonoma"))
    await settle(bot)
    extraction = next(r for r in fake_openai.requests if "Extract facts" in r.prompt_text())
    assert extraction.body["response_format"] == {"type": "json_object"}
    fake_openai.fail_next("500")  # the next reply fails; nothing about entities breaks
    await bot.handle(message("any idea?"))
    await settle(bot)
    await bot.handle(message("and now?"))
    reply_prompts = [r for r in fake_openai.requests if "Extract facts" not in r.prompt_text()]
    system = reply_prompts[-1].messages[0]["content"]
    assert "- os: macOS 14" in system and "- application version: 16.80" in system
    await bot.aclose()
