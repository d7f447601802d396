"""An in-process chat model for tests that need thousands of turns: records every prompt, answers at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


class RecordingModel(BaseChatModel):
    """Replies ``reply to <last message>``; ``delay`` seconds per call; every prompt lands in ``prompts``."""

    delay: float = 0.0
    chunk_delay: float = 0.0  # seconds between streamed words
    reply: str | None = None  # a fixed answer instead of "reply to …"
    gate: asyncio.Event | None = None  # when given, every call waits for it to be set before answering
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording"

    async def _wait(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)

    def _answer(self, messages: list[BaseMessage]) -> str:
        self.prompts.append(list(messages))
        return self.reply if self.reply is not None else f"reply to {messages[-1].text}"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._answer(messages)))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = self._answer(messages)  # recorded when asked, so a test can tell a call is under way
        await self._wait()
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        answer = self._answer(messages)
        await self._wait()
        for word in answer.split(" "):
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
