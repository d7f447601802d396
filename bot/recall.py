"""Vector recall: earlier turns of THIS session that left the window, found by similarity to the new message.

Every turn's user message is embedded while the model answers, and saved with the turn in the session's own keys
(the stored text also holds the answer). On a new message the session's vectors older than the window come with
the turn's first read and are ranked in-process with numpy: plain Redis has no vector search, and one session holds
at most ``memory.recall_max_turns`` of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings

from bot.memory.base import RecallItem, SessionContext, SessionStore, TurnEmbedding
from bot.session import SessionKey

TURN_CHARS = 1_000  # of a recalled turn's text, stored and shown
# Candidates kept in this process across sessions (about 2 KB each with MiniLM): without the cache every turn of a
# long session would read all its vectors again, some 400 KB at 200 turns.
CACHED_ITEMS = 20_000

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


@dataclass(slots=True)
class _Candidates:
    created: float  # the session's creation time: a session erased and started again is another generation
    upto: int  # every candidate with a sequence number up to this one is in ``items``
    items: list[RecallItem]


class Recall:
    """Embeds turns and ranks a session's earlier turns by similarity to a new message.

    The store does the reading and writing, inside the turn's two round trips: ``begin_turn(recall=True)`` hands
    over the session's embedded turns that left the window, and ``commit_turn(embedding=...)`` saves the new one.
    """

    def __init__(
        self,
        *,
        embeddings: Embeddings,
        model_name: str,
        k: int = 3,
        min_score: float = 0.3,
        preload: bool = False,
    ) -> None:
        self._embeddings = embeddings
        self.preload = preload  # a local model worth loading at start rather than in the first turn
        self.model_name = model_name
        self.k = k
        self.min_score = min_score
        self._cache: OrderedDict[str, _Candidates] = OrderedDict()  # session id -> its candidates, LRU
        self._cached_items = 0

    def fetched_upto(self, key: SessionKey) -> int:
        """The sequence number up to which this process holds ``key``'s candidates: ``begin_turn``'s
        ``recall_after``, so a turn reads only the vectors that left the window since the last one."""
        cached = self._cache.get(key.id)
        return cached.upto if cached is not None else 0

    async def candidates(
        self, store: SessionStore, key: SessionKey, context: SessionContext, *, after: int
    ) -> list[RecallItem]:
        """Every embedded turn of the session older than the window: the cached ones plus what ``begin_turn``
        read after ``after`` (``context.recall``).

        The cache is trusted only for the same generation of the session; otherwise (erased and started again, or
        evicted meanwhile) the candidates are read whole, a store call that is rare by construction.

        Raises:
            StoreUnavailable: that whole read failed.
        """
        first_in_window = context.total - len(context.messages) + 1
        created = context.meta.created if context.meta is not None else None
        cached = self._cache.pop(key.id, None)
        if cached is not None:
            self._cached_items -= len(cached.items)
        if created is None:
            return []
        if not after:
            items = list(context.recall)
        elif cached is not None and cached.created == created:
            items = cached.items + list(context.recall)
        else:
            items = [i for i in await store.recall_items(key) if i.seq < first_in_window]
        items = items[-store.limits.max_recall :]
        self._cache[key.id] = _Candidates(created, max(after, first_in_window - 1), items)
        self._cached_items += len(items)
        while self._cached_items > CACHED_ITEMS and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached_items -= len(evicted.items)
        return items

    async def embed(self, text: str) -> Vector | None:
        """The L2-normalised embedding of ``text``; ``None`` while a local model is still loading in the background
        (``serve`` and ``chat`` load it at start): the turn goes without recall instead of waiting seconds for it.

        Raises:
            Exception: whatever the embedding model raises; callers treat recall as optional.
        """
        if getattr(self._embeddings, "loading", False):
            return None
        vector = np.asarray(await self._embeddings.aembed_query(text), dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embedding(self, vector: Vector, *, question: str, answer: str | None) -> TurnEmbedding:
        """What the store keeps of a turn: its text as a prompt would show it, and its question's vector."""
        return TurnEmbedding(text=turn_text(question, answer), vector=vector.tobytes(), model=self.model_name)

    def rank(self, candidates: Sequence[RecallItem], query: Vector) -> list[RecalledTurn]:
        """The ``k`` candidates most similar to ``query``, at least ``min_score`` similar.

        Vectors of another embedding model (written before a configuration change) are skipped, not compared.
        """
        items = [i for i in candidates if i.model == self.model_name and len(i.vector) == query.nbytes]
        if not items:
            return []
        matrix = np.frombuffer(b"".join(i.vector for i in items), dtype=np.float32).reshape(len(items), -1)
        scores = matrix @ query
        best = np.argsort(-scores, kind="stable")[: self.k]
        return [
            RecalledTurn(items[i].seq, items[i].text, float(scores[i])) for i in best if scores[i] >= self.min_score
        ]
