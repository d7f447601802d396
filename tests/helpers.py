"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel

from bot.config import Settings, load_settings
from bot.core import CoreOptions, SupportBot
from bot.entities import EntityExtractor
from bot.kb import KnowledgeBase
from bot.memory import SessionStore
from bot.messages import IncomingMessage
from bot.model import ChatModel, build_chat_model
from bot.recall import Recall
from bot.session import Scope
from bot.strategies import MemoryStrategy, WindowStrategy
from bot.summary import Summarizer

SYSTEM = "You are a helpdesk bot."
_events = itertools.count(1)


def settings_for(fake_base_url: str | None = None, **env: str) -> Settings:
    """Settings from defaults plus ``env``; with ``fake_base_url`` the model is ChatOpenAI on the fake server."""
    environment = {"SUPPORTBOT_CONFIG": "", **env}
    if fake_base_url is not None:
        environment.update(OPENAI_API_KEY="sk-test-secret", OPENAI_BASE_URL=fake_base_url)
    environment.setdefault("SUPPORTBOT_LLM__MAX_RETRIES", "0")
    environment.setdefault("SUPPORTBOT_LLM__TIMEOUT", "5")
    # Tests that inject model failures count chat requests; the embedding endpoint gets its own tests.
    environment.setdefault("SUPPORTBOT_MEMORY__EMBEDDINGS", "hashing")
    return load_settings("/dev/null", env=environment)


def openai_model(fake_base_url: str, **env: str) -> ChatModel:
    """The real ChatOpenAI client pointed at the fake server."""
    return build_chat_model(settings_for(fake_base_url, **env), KnowledgeBase([]))


def make_bot(
    store: SessionStore,
    model: BaseChatModel | ChatModel,
    *,
    scope: Scope = Scope.THREAD_USER,
    strategy: MemoryStrategy | None = None,
    summarizer: Summarizer | None = None,
    extractor: EntityExtractor | None = None,
    recall: Recall | None = None,
    **options: Any,
) -> SupportBot:
    chat_model = model if isinstance(model, ChatModel) else ChatModel(model)
    return SupportBot(
        store=store,
        model=chat_model.model,
        resources=chat_model.resources,
        options=CoreOptions(system_prompt=SYSTEM, scope=scope, **options),
        strategy=strategy or WindowStrategy(k=50, max_tokens=100_000),
        summarizer=summarizer,
        extractor=extractor,
        recall=recall,
    )


async def settle(bot: SupportBot) -> None:
    """Wait until the bot's turns and background upkeep (summary, entities, embeddings) are done.

    However long that takes on a busy machine: a hang is caught by the suite's per-test timeout.
    """
    while bot.in_flight:
        await asyncio.sleep(0.01)


def message(
    text: str,
    *,
    channel: str = "C1",
    user: str = "U1",
    thread: str | None = None,
    event_id: str | None = None,
    platform: str = "slack",
    workspace: str | None = "T1",
    is_direct: bool = False,
) -> IncomingMessage:
    return IncomingMessage(
        platform=platform,
        workspace=workspace,
        channel=channel,
        thread=thread,
        user=user,
        text=text,
        event_id=event_id or f"ev-{next(_events)}",
        is_direct=is_direct,
    )
