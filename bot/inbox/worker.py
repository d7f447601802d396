"""The worker loop: take entries from the inbox, have their platform's adapter answer them, mark them done.

An entry is done only after its adapter returned (the turn committed and the reply was posted). A failed attempt
is taken again after the visibility timeout; an entry that failed ``max_attempts`` times is set aside for an
operator. While an attempt runs, the worker heart-beats it so no other worker takes it over; on shutdown the
attempts still running after the grace period are cancelled and their entries given back, to be answered by the
next worker (or by this one restarted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.constants import INBOX_CONCURRENCY, INBOX_MAX_ATTEMPTS, INBOX_VISIBILITY_S
from bot.errors import StoreUnavailable
from bot.inbox.base import Delivery, Inbox

log = logging.getLogger("supportbot.inbox")

CANCEL_WAIT_S = 5.0  # how long a shutdown waits for a cancelled task before going on without it
TAKE_WAIT_S = 1.0  # a take waits this long for new entries before the loop looks at its own state again
DONE_RETRY_S = 0.2  # first pause before marking an answered entry done again, doubling up to the visibility timeout


async def cancel_and_wait(tasks: set[asyncio.Task[Any]], *, timeout: float = CANCEL_WAIT_S) -> None:
    """Cancel ``tasks`` and wait for them, but not forever: a client library that swallows a cancellation (redis-py
    can, inside a blocking read) must not hold a shutdown up. The loops here also stop on their own flags."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.warning("task %s did not stop within %.0f s of its cancellation", task.get_name(), timeout)


@dataclass(slots=True)
class Attempt:
    """One attempt at answering one entry, as its adapter sees it."""

    delivery: Delivery
    inbox: Inbox
    confirmed: float  # monotonic time the inbox last confirmed this worker holds the entry
    visibility: float
    lost: bool = False

    def holds(self) -> bool:
        """Whether no other worker can have taken the entry over: confirmed within the visibility timeout."""
        return not self.lost and time.monotonic() - self.confirmed < self.visibility * 0.8

    async def note_reply(self, ref: str) -> None:
        """Remember where the reply is being posted, so a later attempt finishes that message instead of a new one."""
        try:
            await self.inbox.note_reply(self.delivery, ref)
        except StoreUnavailable as exc:
            log.warning("could not note the reply of entry %s: %s", self.delivery.entry_id, exc)


Handler = Callable[[Attempt], Awaitable[None]]


class InboxWorker:
    """Answers the inbox's entries with the handlers registered per platform."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        concurrency: int = INBOX_CONCURRENCY,
        max_attempts: int = INBOX_MAX_ATTEMPTS,
        visibility: float = INBOX_VISIBILITY_S,
    ) -> None:
        self.inbox = inbox
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._visibility = visibility
        self._handlers: dict[str, Handler] = {}
        self._active: dict[asyncio.Task[None], Attempt] = {}
        self._loop: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._slot = asyncio.Event()
        self._stopping = False
        self._counter = 0

    def register(self, platform: str, handler: Handler) -> None:
        """Answer entries of ``platform`` with ``handler``."""
        self._handlers[platform] = handler

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms this worker answers."""
        return tuple(self._handlers)

    @property
    def in_flight(self) -> int:
        """Attempts running right now."""
        return len(self._active)

    def start(self) -> None:
        """Start taking entries."""
        if self._loop is None:
            loop = asyncio.get_running_loop()
            self._loop = loop.create_task(self._take_forever(), name="supportbot-inbox-worker")
            self._beat = loop.create_task(self._heartbeat_forever(), name="supportbot-inbox-worker-heartbeat")

    async def _take_forever(self) -> None:
        pause = 0.1
        while not self._stopping:
            free = self._concurrency - len(self._active)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                deliveries = await self.inbox.take(limit=free, wait=TAKE_WAIT_S)
            except Exception as exc:  # the loop must outlive any one failure, or nothing is answered any more
                log.warning("the inbox cannot be read: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            pause = 0.1
            for delivery in deliveries:
                self._spawn(delivery)

    def _spawn(self, delivery: Delivery) -> None:
        self._counter += 1
        attempt = Attempt(delivery, self.inbox, confirmed=time.monotonic(), visibility=self._visibility)
        name = f"supportbot-inbox-{self._counter}:{delivery.message.platform}:{delivery.message.event_id}"
        task = asyncio.get_running_loop().create_task(self._answer(attempt), name=name)
        self._active[task] = attempt
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._active.pop(task, None)
        self._slot.set()

    async def _answer(self, attempt: Attempt) -> None:
        delivery = attempt.delivery
        where = {"session_id": delivery.session_id, "event_id": delivery.message.event_id}
        if delivery.redelivered:
            log.info("inbox entry %s handed out again (attempt %d)", delivery.entry_id, delivery.attempts, extra=where)
        if delivery.attempts > self._max_attempts:
            log.error("giving up on inbox entry %s after %d attempts", delivery.entry_id, delivery.attempts - 1)
            await self._quietly(self.inbox.abandon(delivery, reason=f"{delivery.attempts - 1} attempts failed"))
            return
        handler = self._handlers.get(delivery.message.platform)
        if handler is None:
            log.error("no %s adapter in this process answers inbox entries", delivery.message.platform, extra=where)
            await self._quietly(self.inbox.postpone(delivery))
            return
        try:
            await handler(attempt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("answering inbox entry %s failed; it is tried again later", delivery.entry_id, extra=where)
            await self._quietly(self.inbox.postpone(delivery))
            return
        await self._mark_done(delivery)

    async def _mark_done(self, delivery: Delivery) -> None:
        """Remove an answered entry, retrying through a short store outage (a leftover would be answered again)."""
        pause = DONE_RETRY_S
        deadline = time.monotonic() + self._visibility
        while True:
            try:
                await self.inbox.done(delivery)
                return
            except StoreUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    log.error("answered inbox entry %s could not be marked done: %s", delivery.entry_id, exc)
                    return
                await asyncio.sleep(pause)
                pause *= 2

    async def _quietly(self, step: Awaitable[None]) -> None:
        try:
            await step
        except StoreUnavailable as exc:
            log.warning("inbox bookkeeping failed: %s", exc)

    async def _heartbeat_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._visibility / 3)
            attempts = list(self._active.values())
            if not attempts:
                continue
            asked = time.monotonic()
            try:
                held = await self.inbox.extend([a.delivery for a in attempts])
            except Exception as exc:  # a heartbeat that stops lets every running attempt be taken over
                log.warning("inbox heartbeat failed: %s: %s", type(exc).__name__, exc)
                continue
            running = {id(a) for a in self._active.values()}
            for attempt in attempts:
                if id(attempt) not in running:
                    continue  # finished meanwhile: its entry is gone because it is done, not taken over
                if attempt.delivery.entry_id in held:
                    attempt.confirmed = asked
                elif not attempt.lost:
                    attempt.lost = True
                    log.warning("inbox entry %s was taken over by another worker", attempt.delivery.entry_id)

    async def stop(self, *, grace: float) -> None:
        """Take nothing more; let running attempts finish for up to ``grace`` seconds, then give the rest back."""
        self._stopping = True
        if self._loop is not None:
            await cancel_and_wait({self._loop})
        if self._active:
            await asyncio.wait(set(self._active), timeout=grace)
        unfinished = [attempt.delivery for attempt in self._active.values()]
        await cancel_and_wait(set(self._active))
        if self._beat is not None:
            await cancel_and_wait({self._beat})
        if unfinished:
            log.info("%d unanswered inbox entries given back for the next worker", len(unfinished))
            await self._quietly(self.inbox.release(unfinished))
