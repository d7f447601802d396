"""Vector recall: earlier turns of THIS session that left the window, found by similarity to the new message.

Every turn's user message is embedded while the model answers, and saved with the turn in the session's own keys
(the stored text also holds the answer). On a new message the session's vectors older than the window come with
the turn's first read and are ranked in-process with numpy: plain Redis has no vector search, and one session holds
at most ``memory.recall_max_turns`` of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings

from bot.memory.base import RecallItem, TurnEmbedding

log = logging.getLogger("supportbot.recall")

TURN_CHARS = 1_000  # of a recalled turn's text, stored and shown

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

    async def embed(self, text: str) -> Vector:
        """The L2-normalised embedding of ``text``.

        Raises:
            Exception: whatever the embedding model raises; callers treat recall as optional.
        """
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
