"""An adapter's side of the inbox: record what the platform delivers, and, for an adapter started on its own (a test,
a script), a worker of its own that hands the recorded messages back to it to answer."""

from __future__ import annotations

from bot.inbox.base import Inbox, Route
from bot.inbox.memory import MemoryInbox
from bot.inbox.worker import Handler, InboxWorker
from bot.messages import IncomingMessage


class Desk:
    """Where an adapter records messages before acknowledging them."""

    def __init__(self, inbox: Inbox, *, worker: InboxWorker | None = None) -> None:
        self.inbox = inbox
        self._worker = worker

    @classmethod
    def own(cls, platform: str, handler: Handler) -> Desk:
        """An in-process inbox with a worker answering it through ``handler``: an adapter that no runner serves."""
        inbox = MemoryInbox()
        worker = InboxWorker(inbox=inbox)
        worker.register(platform, handler)
        worker.start()
        return cls(inbox, worker=worker)

    async def record(self, message: IncomingMessage, *, route: Route, session_id: str) -> bool:
        """Record ``message`` durably (see :meth:`Inbox.put`).

        Raises:
            StoreUnavailable: nothing was recorded; the platform must not be acknowledged.
        """
        return await self.inbox.put(message, route=route, session_id=session_id)

    async def idle(self) -> bool:
        """Whether nothing recorded here is waiting or being answered (for a desk with its own worker; a shared
        inbox's work belongs to the runner's worker)."""
        return self._worker is None or (self._worker.in_flight == 0 and (await self.inbox.stats()).depth == 0)

    async def aclose(self, *, grace: float) -> None:
        """Stop the desk's own worker (giving it ``grace`` seconds) and inbox; a shared inbox is its owner's."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await worker.stop(grace=grace)
            await self.inbox.aclose()
