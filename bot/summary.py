"""The rolling summary: messages that leave the window are folded into a per-session summary after the reply.

A fold reads the messages after the summary's cut point, asks a :class:`Summarizer` for the new summary and
saves it together with the new cut point in one atomic store call that only succeeds if nobody folded in
between — so folds are idempotent, and a message is trimmed from storage only once a summary covers it.
"""

from __future__ import annotations

import re
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
# About 400 tokens: the window already shows the recent messages, and recall brings back older ones on demand.
EXTRACT_MAX_CHARS = 1_600
# A point naming something concrete (a version, code, tag, extension, ticket: a token with a digit) is what a
# later turn asks about; a point without one goes first when the summary is full.
_CONCRETE = re.compile(r"\b[\w.#-]*\d[\w.#-]*\b")


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
    """The offline summary: what the user said, one line each, oldest first; no model needed.

    When it outgrows ``EXTRACT_MAX_CHARS`` the oldest points without anything concrete in them go first, then the
    oldest of the rest: "my asset tag is ZX-4471" outlives "thanks, that worked".
    """

    async def fold(self, summary: str | None, messages: Sequence[StoredMessage]) -> str:
        points = [line for line in (summary or "").splitlines() if line.startswith("- ")]
        for m in messages:
            if m.role == "user":
                text = " ".join(m.content.split())
                points.append(f"- {text[:EXTRACT_POINT_CHARS]}{'…' if len(text) > EXTRACT_POINT_CHARS else ''}")
        size = sum(len(p) + 1 for p in points)
        vague = [i for i, p in enumerate(points) if not _CONCRETE.search(p)]
        dropped: set[int] = set()
        for i in [*vague, *range(len(points))]:
            if size <= EXTRACT_MAX_CHARS:
                break
            if i not in dropped:
                dropped.add(i)
                size -= len(points[i]) + 1
        return "Earlier, the user said:\n" + "\n".join(p for i, p in enumerate(points) if i not in dropped)
