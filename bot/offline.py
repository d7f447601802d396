"""The offline responder: a LangChain chat model that needs no network.

It answers from the knowledge base, chosen by BM25 relevance to the new message and to this session's
earlier messages (which it reads from the prompt, so what it says comes from the session's memory), and it
says plainly that no language model is configured and how to configure one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from bot.kb import KnowledgeBase, Section
from bot.strategies import RECALL_HEADER
from bot.words import content_words

NOT_CONFIGURED_NOTE = (
    "Note: no language model is configured, so this answer comes from the knowledge base. "
    "Set `OPENAI_API_KEY` (or `OPENAI_BASE_URL` for a local OpenAI-compatible server such as Ollama or vLLM) "
    "for full answers."
)
# Questions about the conversation itself rather than about a new problem.
_RECALL = re.compile(
    r"\b(earlier|before|previous(ly)?|remind|recap|so far|"
    r"(did|have) i (say|said|tell|told|report|reported|mention|mentioned|ask|asked|write|wrote)|"
    r"i (said|told|reported|mentioned|asked|wrote))\b",
    re.IGNORECASE,
)
# Words of "what did I say earlier" questions that say nothing about what the user is asking for.
_RECALL_WORDS = frozenset(
    {"say", "said", "tell", "told", "mention", "mentioned", "earlier", "before", "again", "remind"}
)
_QUOTE_CHARS = 160
_RECAP_MESSAGES = 3
_STEPS_CHARS = 900


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return f"“{flat[:_QUOTE_CHARS]}…”" if len(flat) > _QUOTE_CHARS else f"“{flat}”"


def _article(section: Section) -> str:
    body = section.body
    if len(body) > _STEPS_CHARS:
        body = body[:_STEPS_CHARS].rsplit("\n", 1)[0] + "\n…"
    heading = "" if section.heading == section.article else f" — {section.heading}"
    return f"From the help article **{section.article}**{heading}:\n\n{body}"


def _about(question: str, said: Sequence[str], *, limit: int = 2) -> list[str]:
    """Up to ``limit`` of ``said`` sharing the most topic words with ``question``, in the order they were said."""
    wanted = set(content_words(question)) - _RECALL_WORDS
    overlap = {i: len(wanted & set(content_words(text))) for i, text in enumerate(said)}
    best = sorted((i for i in overlap if overlap[i]), key=lambda i: (-overlap[i], -i))[:limit]
    return [said[i] for i in sorted(best)]


def _recalled_questions(messages: Sequence[BaseMessage]) -> list[str]:
    """What the user said in the turns vector recall brought back into the prompt."""
    return [
        line.removeprefix("User: ")
        for m in messages
        if isinstance(m, SystemMessage) and _text(m).startswith(RECALL_HEADER)
        for line in _text(m).splitlines()
        if line.startswith("User: ")
    ]


class OfflineResponder(BaseChatModel):
    """Answers from ``kb`` and the conversation in the prompt; deterministic and instant."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: KnowledgeBase
    top_k: int = 2  # articles considered; the best is shown, the others are named as "see also"

    @property
    def _llm_type(self) -> str:
        return "supportbot-offline"

    def compose(self, messages: Sequence[BaseMessage]) -> str:
        """The reply to the last human message of ``messages``, grounded in the earlier ones.

        The note that no model is configured comes with the first reply of a conversation only.
        """
        humans = [_text(m) for m in messages if isinstance(m, HumanMessage)]
        if not humans:
            return "What can I help you with?\n\n" + NOT_CONFIGURED_NOTE
        new, earlier = humans[-1], humans[:-1]
        # What the user told us, without their questions about the conversation itself ("what did I say?").
        told = [t for t in earlier if not _RECALL.search(t)]
        recall = bool(_RECALL.search(new))
        if recall:
            parts = self._recap(new, told, _recalled_questions(messages), first=not earlier)
        else:
            parts = self._answer(new, told)
        if not earlier:
            parts.append(NOT_CONFIGURED_NOTE)
        return "\n\n".join(parts)

    def _recap(self, question: str, told: list[str], recalled: list[str], *, first: bool) -> list[str]:
        """What the user said earlier, for a question about the conversation."""
        parts = []
        recalled = [t for t in recalled if not _RECALL.search(t)]
        if recalled:
            quotes = "\n".join(f"- {_quote(t)}" for t in recalled)
            parts.append(f"From earlier in this conversation, you told me:\n{quotes}")
        relevant = _about(question, told[:-_RECAP_MESSAGES])
        if relevant:
            quotes = "\n".join(f"- {_quote(t)}" for t in relevant)
            parts.append(f"Earlier you told me:\n{quotes}")
        if told:
            recap = "\n".join(f"- {_quote(t)}" for t in told[-_RECAP_MESSAGES:])
            parts.append(f"Here is what you have told me most recently:\n{recap}")
        if not recalled and not told:
            said = "This conversation has no earlier messages yet" if first else "You have not described a problem yet"
            parts.append(f"{said}. Tell me what is going wrong and I will help.")
        return parts

    def _answer(self, question: str, told: list[str]) -> list[str]:
        """The help article for ``question``; for a follow-up that names no topic ("it still fails"), the article for
        what the user said before, saying so."""
        parts = []
        query = question
        hits = self.kb.search(question, k=self.top_k * 4)
        if not hits and told:
            query = " ".join(told[-_RECAP_MESSAGES:])
            hits = self.kb.search(query, k=self.top_k * 4)
            if hits:
                parts.append(f"(Going by what you said earlier, {_quote(told[-1])}.)")
        if not hits:
            topics = ", ".join(self.kb.articles) or "none are installed"
            return [f"I could not find a help article for that. Articles I know: {topics}."]
        parts.append(_article(self.kb.answer(query) or hits[0].section))
        related = list(dict.fromkeys(h.section.article for h in hits))[1 : self.top_k]
        if related:
            parts.append("See also: " + ", ".join(f"**{title}**" for title in related) + ".")
        return parts

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.compose(messages)))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in re.findall(r"\S+\s*|\s+", self.compose(messages)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages):
            yield chunk
