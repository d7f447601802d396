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
    parts = _PromptParts(
        system_prompt=system_prompt,
        summary=context.summary,
        recalled=sorted(recalled, key=lambda t: t.score, reverse=True),
        kb=sorted(snippets, key=lambda s: s.score, reverse=True),
        window=strategy.select([to_langchain(m) for m in context.messages]),
        text=text,
    )
    if max_tokens is not None:
        parts.cut(max_tokens)
    return parts.render()


class _PromptParts:
    """A prompt's parts, most valuable last in each list, so cutting pops from the end (or the window's start)."""

    def __init__(
        self,
        *,
        system_prompt: str,
        summary: str | None,
        recalled: list[RecalledTurn],
        kb: list[Snippet],
        window: list[BaseMessage],
        text: str,
    ) -> None:
        self.system_prompt, self.summary, self.recalled, self.kb = system_prompt, summary, recalled, kb
        self.window, self.text = window, text

    def summary_block(self) -> list[BaseMessage]:
        return [SystemMessage(content=f"Summary of the earlier conversation:\n{self.summary}")] if self.summary else []

    def recall_block(self) -> list[BaseMessage]:
        return [SystemMessage(content=_recall_block(self.recalled))] if self.recalled else []

    def knowledge_block(self) -> list[BaseMessage]:
        return [SystemMessage(content=_knowledge_block(self.kb))] if self.kb else []

    def render(self) -> list[BaseMessage]:
        return [
            SystemMessage(content=self.system_prompt),
            *self.summary_block(),
            *self.recall_block(),
            *self.knowledge_block(),
            *self.window,
            HumanMessage(content=self.text),
        ]

    def cut(self, max_tokens: int) -> None:
        """Drop parts, least valuable first, until the prompt fits ``max_tokens`` (or only the essentials are left).

        The counter adds up per message, so each part is counted once and a part is counted again only when it
        changes: cutting a long buffer stays linear in its length.
        """
        count = count_tokens_approximately
        fixed = count([SystemMessage(content=self.system_prompt), HumanMessage(content=self.text)])
        blocks = {"summary": count(self.summary_block()), "recall": count(self.recall_block())}
        blocks["kb"] = count(self.knowledge_block())
        window_costs = [count([m]) for m in self.window]
        window_total = sum(window_costs)

        def drop_oldest() -> None:
            nonlocal window_total
            window_total -= window_costs.pop(0)
            del self.window[0]

        while fixed + sum(blocks.values()) + window_total > max_tokens:
            if self.kb:
                self.kb.pop()
                blocks["kb"] = count(self.knowledge_block())
            elif self.recalled:
                self.recalled.pop()
                blocks["recall"] = count(self.recall_block())
            elif len(self.window) > 2:
                drop_oldest()
                while self.window and self.window[0].type != "human":
                    drop_oldest()
            elif self.summary:
                self.summary, blocks["summary"] = None, 0
            elif self.window:
                drop_oldest()
            else:
                break
