"""Memory upkeep after a reply: summary folds and entity extraction, in background tasks this object owns.

Nothing here is on a turn's path: a turn schedules upkeep once its reply is saved and returns. A failure is
counted and logged; the work is simply tried again after the session's next turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

from bot.entities import EntityExtractor, merge_listed
from bot.errors import ModelError, StoreUnavailable
from bot.memory.base import Entities, Entity, SessionContext, SessionStore
from bot.metrics import TurnMetrics
from bot.session import SessionKey
from bot.summary import Summarizer

log = logging.getLogger("supportbot.upkeep")


class Upkeep:
    """Schedules and owns the summary folds and entity extractions of every session."""

    def __init__(
        self,
        *,
        store: SessionStore,
        metrics: TurnMetrics,
        window: int,
        summarizer: Summarizer | None = None,
        extractor: EntityExtractor | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._window = window
        self.summarizer = summarizer
        self.extractor = extractor
        self._folds: dict[str, asyncio.Task[None]] = {}  # session id -> its running fold
        self._extractions: set[asyncio.Task[None]] = set()

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """Upkeep running now."""
        return set(self._folds.values()) | self._extractions

    def after_turn(self, key: SessionKey, context: SessionContext, *, saved: int, text: str) -> None:
        """Schedule what a saved turn calls for; ``context`` is what the turn read, ``saved`` what it appended."""
        self._schedule_fold(key, context, saved=saved)
        if self.extractor is not None:
            task = asyncio.get_running_loop().create_task(
                self._extract(key, text, context.entities, fence=context.fence), name=f"supportbot-entities:{key.id}"
            )
            self._extractions.add(task)
            task.add_done_callback(self._extractions.discard)

    def _schedule_fold(self, key: SessionKey, context: SessionContext, *, saved: int) -> None:
        """Fold what is about to leave the window into the summary.

        It starts a few messages before the window's edge and folds up to the window's middle, so a fold has a
        couple of turns to finish before any message leaves the window unsummarised, and runs about every
        window / 4 turns rather than on every turn.
        """
        total = context.total + saved
        if self.summarizer is None or key.id in self._folds:
            return
        if total - context.summary_upto < max(self._window - 4, 2):
            return
        upto = total - self._window // 2
        task = asyncio.get_running_loop().create_task(
            self._fold(key, upto, fence=context.fence), name=f"supportbot-fold:{key.id}"
        )
        self._folds[key.id] = task
        task.add_done_callback(lambda _: self._folds.pop(key.id, None))

    async def _fold(self, key: SessionKey, upto: int, *, fence: int) -> None:
        # ``fence`` is the lease token of the turn that scheduled the fold: an erasure of the session since then
        # refuses the summary, even if a new conversation has started in it meanwhile.
        assert self.summarizer is not None
        try:
            work = await self._store.unsummarized(key, upto=upto)
            if not work.messages:
                return
            summary = await self.summarizer.fold(work.summary, work.messages)
            if await self._store.save_summary(key, summary=summary, after=work.summary_upto, upto=upto, fence=fence):
                log.info("summary folded up to message %d", upto, extra={"session_id": key.id})
        except (ModelError, StoreUnavailable) as exc:
            self._metrics.count_error(exc)
            log.warning("summary fold failed for session %s: %s", key.id, exc, extra={"session_id": key.id})

    async def _extract(self, key: SessionKey, text: str, known: Entities, *, fence: int) -> None:
        assert self.extractor is not None
        try:
            facts = await self.extractor.extract(text)
            if facts:
                now = time.time()
                entities = {
                    name: Entity(merge_listed(name, known[name].value if name in known else None, value), now)
                    for name, value in facts.items()
                }
                await self._store.save_entities(key, entities, fence=fence)
        except (ModelError, StoreUnavailable) as exc:
            self._metrics.count_error(exc)
            log.warning("entity extraction failed for session %s: %s", key.id, exc, extra={"session_id": key.id})
