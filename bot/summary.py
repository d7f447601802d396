"""The rolling summary: messages that leave the window are folded into a per-session summary after the reply.

A fold reads the messages after the summary's cut point, asks a :class:`Summarizer` for the new summary and
saves it together with the new cut point in one atomic store call that only succeeds if nobody folded in
between — so folds are idempotent, and a message is trimmed from storage only once a summary covers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from bot.errors import ModelError
from bot.messages import StoredMessage

FOLD_INSTRUCTIONS = (
    "You keep the running summary of an IT helpdesk conversation. Rewrite the summary so it also covers the new "
    "messages. Keep every fact that could matter later: the user's problems, devices, operating systems, apps "
    "and versions, error messages and codes, ticket numbers, what was tried and what worked. Plain sentences, "
    "at most {words} words. Answer with the summary only."
)
EXTRACT_POINT_CHARS = 160  # of each user message kept by the offline summary
EXTRACT_MAX_CHARS = 4_000  # the offline summary drops its oldest points beyond this


class Summarizer(Protocol):
    """Folds new messages into a summary."""

    async def fold(self, summary: str | None, messages: Sequence[StoredMessage]) -> str:
        """The summary covering ``summary`` and ``messages``.

        Raises:
            ModelError: the summary could not be made; the fold is retried after a later turn.
        """
        ...


def transcript(messages: Sequence[StoredMessage]) -> str:
    """Messages as ``User: …`` / ``Assistant: …`` lines."""
    return "\n".join(f"{'User' if m.role == 'user' else 'Assistant'}: {m.content}" for m in messages)


class ModelSummarizer:
    """Asks the chat model to rewrite the summary."""

    def __init__(self, model: BaseChatModel, *, max_words: int = 200) -> None:
        self._model = model
        self._instructions = FOLD_INSTRUCTIONS.format(words=max_words)

    async def fold(self, summary: str | None, messages: Sequence[StoredMessage]) -> str:
        prompt = [
            SystemMessage(content=self._instructions),
            HumanMessage(
                content=f"Summary so far:\n{summary or '(none yet)'}\n\nNew messages:\n{transcript(messages)}"
            ),
        ]
        try:
            result = await self._model.ainvoke(prompt)
        except Exception as exc:
            raise ModelError(f"the summary fold failed: {type(exc).__name__}") from exc
        text = result.text.strip()
        if not text:
            raise ModelError("the model returned an empty summary")
        return text


class ExtractiveSummarizer:
    """The offline summary: what the user said, one line each, newest last; no model needed."""

    async def fold(self, summary: str | None, messages: Sequence[StoredMessage]) -> str:
        points = [line for line in (summary or "").splitlines() if line.startswith("- ")]
        for m in messages:
            if m.role == "user":
                text = " ".join(m.content.split())
                points.append(f"- {text[:EXTRACT_POINT_CHARS]}{'…' if len(text) > EXTRACT_POINT_CHARS else ''}")
        while points and sum(len(p) + 1 for p in points) > EXTRACT_MAX_CHARS:
            points.pop(0)
        return "Earlier, the user said:\n" + "\n".join(points)
