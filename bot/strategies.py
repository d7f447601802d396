"""Memory strategies: how much of a session's history the model sees, and the prompt built from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

from bot.memory.base import SessionContext
from bot.messages import StoredMessage
from bot.recall import RecalledTurn

SNIPPET_CHARS = 1_200  # of each knowledge-base passage offered to the model
RECALL_HEADER = "Earlier in this conversation (recalled because it may be relevant):"


class MemoryStrategy(Protocol):
    """Chooses the window: how many messages to read, and which of them reach the prompt."""

    name: str

    @property
    def load_size(self) -> int:
        """Messages to read from the store per turn (the most recent ones)."""
        ...

    def select(self, history: Sequence[BaseMessage]) -> list[BaseMessage]:
        """The part of ``history`` (oldest first) that goes into the prompt."""
        ...


class BufferStrategy:
    """Everything the store keeps (up to ``memory.max_messages``)."""

    name = "buffer"

    def __init__(self, *, max_messages: int) -> None:
        self._max = max_messages

    @property
    def load_size(self) -> int:
        return self._max

    def select(self, history: Sequence[BaseMessage]) -> list[BaseMessage]:
        return list(history)


class WindowStrategy:
    """The last ``k`` messages, further cut to a token budget counted offline."""

    name = "window"

    def __init__(self, *, k: int, max_tokens: int) -> None:
        self._k = k
        self._max_tokens = max_tokens

    @property
    def load_size(self) -> int:
        return self._k

    def select(self, history: Sequence[BaseMessage]) -> list[BaseMessage]:
        if not history:
            return []
        if count_tokens_approximately(history) <= self._max_tokens:
            # Under budget (the usual case): trimming would only drop replies that precede the first question.
            first_human = next((i for i, m in enumerate(history) if m.type == "human"), len(history))
            return list(history[first_human:])
        return trim_messages(
            list(history),
            max_tokens=self._max_tokens,
            token_counter=count_tokens_approximately,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )


def to_langchain(message: StoredMessage) -> BaseMessage:
    """A stored message as the LangChain message the model sees."""
    if message.role == "user":
        return HumanMessage(content=message.content)
    return AIMessage(content=message.content)


@dataclass(frozen=True, slots=True)
class Snippet:
    """A knowledge-base passage offered to the model, with its BM25 score."""

    title: str
    heading: str
    body: str
    score: float


def _knowledge_block(snippets: Sequence[Snippet]) -> str:
    parts = [
        f"### {s.title}" + ("" if s.heading == s.title else f" — {s.heading}") + f"\n{s.body[:SNIPPET_CHARS]}"
        for s in snippets
    ]
    return "Help articles that may be relevant (name the article when you use it):\n\n" + "\n\n".join(parts)


def _recall_block(recalled: Sequence[RecalledTurn]) -> str:
    turns = "\n\n".join(turn.text for turn in sorted(recalled, key=lambda t: t.seq))
    return f"{RECALL_HEADER}\n\n{turns}"


def build_prompt(
    *,
    system_prompt: str,
    context: SessionContext,
    text: str,
    strategy: MemoryStrategy,
    snippets: Sequence[Snippet] = (),
    recalled: Sequence[RecalledTurn] = (),
    max_tokens: int | None = None,
) -> list[BaseMessage]:
    """System prompt, summary, recalled turns, knowledge-base snippets, the window of this session, the new message.

    With ``max_tokens`` the prompt is cut to fit, least valuable first: the lowest-scoring snippets, then the
    least similar recalled turns, then the oldest messages of the window (down to the last exchange), then the
    summary, then the rest of the window. The system prompt and the new message always stay.
    """
    window = strategy.select([to_langchain(m) for m in context.messages])
    summary = context.summary
    kb = sorted(snippets, key=lambda s: s.score, reverse=True)
    earlier = sorted(recalled, key=lambda t: t.score, reverse=True)

    def render() -> list[BaseMessage]:
        prompt: list[BaseMessage] = [SystemMessage(content=system_prompt)]
        if summary:
            prompt.append(SystemMessage(content=f"Summary of the earlier conversation:\n{summary}"))
        if earlier:
            prompt.append(SystemMessage(content=_recall_block(earlier)))
        if kb:
            prompt.append(SystemMessage(content=_knowledge_block(kb)))
        prompt.extend(window)
        prompt.append(HumanMessage(content=text))
        return prompt

    prompt = render()
    while max_tokens is not None and count_tokens_approximately(prompt) > max_tokens:
        if kb:
            kb.pop()
        elif earlier:
            earlier.pop()
        elif len(window) > 2:
            del window[0]
            while window and window[0].type != "human":
                del window[0]
        elif summary:
            summary = None
        elif window:
            del window[0]
        else:
            break
        prompt = render()
    return prompt
