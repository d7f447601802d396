"""Vector recall: earlier turns of THIS session that left the window, found by similarity to the new message.

Every saved turn is embedded (the user's message; the stored text also holds the answer) and kept in the
session's own keys. On a new message the session's vectors are read and searched in-process with numpy: plain
Redis has no vector search, and one session holds at most ``memory.recall_max_turns`` of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings

from bot.memory.base import RecallItem, SessionStore
from bot.session import SessionKey

log = logging.getLogger("supportbot.recall")

TURN_CHARS = 1_000  # of a recalled turn's text, stored and shown
_CACHE_SIZE = 256  # recent embeddings, so the turn's own vector is computed once for search and storage

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class RecalledTurn:
    """An earlier turn brought back into the prompt, and how similar it was to the new message."""

    seq: int
    text: str
    score: float


def turn_text(question: str, answer: str | None) -> str:
    """A turn as the prompt shows it when recalled."""
    text = f"User: {question}" + (f"\nAssistant: {answer}" if answer else "")
    return text if len(text) <= TURN_CHARS else text[: TURN_CHARS - 1] + "…"


class Recall:
    """Embeds turns, stores their vectors with the session, and finds the ones worth recalling."""

    def __init__(
        self,
        *,
        store: SessionStore,
        embeddings: Embeddings,
        model_name: str,
        k: int = 3,
        min_score: float = 0.3,
    ) -> None:
        self._store = store
        self._embeddings = embeddings
        self.model_name = model_name
        self.k = k
        self.min_score = min_score
        self._cache: OrderedDict[str, Vector] = OrderedDict()

    async def embed(self, text: str) -> Vector:
        """The L2-normalised embedding of ``text``.

        Raises:
            Exception: whatever the embedding model raises; callers treat recall as optional.
        """
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        vector = np.asarray(await self._embeddings.aembed_query(text), dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if norm:
            vector = vector / norm
        self._cache[text] = vector
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return vector

    async def remember(self, key: SessionKey, *, seq: int, question: str, answer: str | None) -> None:
        """Embed a saved turn and keep it with its session (``seq``: the sequence number of its user message)."""
        vector = await self.embed(question)
        item = RecallItem(seq=seq, text=turn_text(question, answer), vector=vector.tobytes(), model=self.model_name)
        await self._store.save_recall(key, item)

    async def search(self, key: SessionKey, text: str, *, before: int) -> list[RecalledTurn]:
        """The ``k`` turns of ``key``'s session most similar to ``text`` among those with ``seq < before``.

        Embedding the message and reading the session's vectors run concurrently. Vectors of another embedding
        model (written before a configuration change) are skipped, not compared.

        Raises:
            StoreUnavailable: the store cannot be reached.
            Exception: whatever the embedding model raises.
        """
        query, stored = await asyncio.gather(self.embed(text), self._store.recall_items(key))
        items = [i for i in stored if i.seq < before and i.model == self.model_name and len(i.vector) == query.nbytes]
        if not items:
            return []
        matrix = np.frombuffer(b"".join(i.vector for i in items), dtype=np.float32).reshape(len(items), -1)
        scores = matrix @ query
        best = np.argsort(-scores, kind="stable")[: self.k]
        return [
            RecalledTurn(items[i].seq, items[i].text, float(scores[i])) for i in best if scores[i] >= self.min_score
        ]
