"""The runner owns every long-lived thing of ``supportbot serve``: store, bot, adapters, background tasks.

It starts them in order and closes them in reverse order, giving in-flight turns a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from bot.adapter import Adapter, Answers, Drains, Escalates, HostsHttp, ServesHttp
from bot.app import build_bot, build_inbox, build_store, describe_setup
from bot.config import Settings
from bot.core import SupportBot
from bot.errors import StoreUnavailable
from bot.inbox import Inbox, InboxWorker
from bot.inbox.worker import cancel_and_wait
from bot.memory import SessionStore

log = logging.getLogger("supportbot.runner")

INBOX_STATS_EVERY_S = 5.0  # how often /metrics' inbox depth and oldest age are refreshed

AdapterLoader = Callable[[str], type[Adapter]]


async def sweep_forever(store: SessionStore, interval: float) -> None:
    """Expire idle sessions of the embedded stores every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await store.sweep()
        except StoreUnavailable as exc:
            log.warning("expiry sweep failed: %s", exc)
            continue
        if removed:
            log.info("expired %d idle sessions", removed)


class Runner:
    """Starts and stops one Supportbot process."""

    def __init__(self, settings: Settings, *, names: list[str], load: AdapterLoader) -> None:
        self.settings = settings
        self._names = names
        self._load = load
        self.store: SessionStore | None = None
        self.bot: SupportBot | None = None
        self.adapters: list[Adapter] = []
        self.inbox: Inbox | None = None
        self.worker: InboxWorker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self, *, say: Callable[[str], None] = print) -> None:
        """Open the store, build the bot, start every enabled adapter and the background tasks."""
        self.store = build_store(self.settings)
        self.bot = build_bot(self.settings, store=self.store)
        for line in describe_setup(self.settings, self.bot):
            say(line)
        enabled: list[Adapter] = []
        for name in self._names:
            adapter_cls = self._load(name)
            on, line = adapter_cls.enabled(self.settings)
            say(line)
            if on:
                enabled.append(adapter_cls(settings=self.settings))
        routes = [route for a in enabled if isinstance(a, ServesHttp) for route in a.http_routes()]
        hosts = [a for a in enabled if isinstance(a, HostsHttp)]
        if routes and not hosts:
            raise RuntimeError("an adapter needs the HTTP server, but no adapter runs one")
        for host in hosts:
            host.add_routes(routes)
        role = self.settings.server.role
        self.inbox = build_inbox(self.settings)
        if role != "web":
            inbox = self.settings.inbox
            self.worker = InboxWorker(
                inbox=self.inbox,
                concurrency=inbox.concurrency,
                max_attempts=inbox.max_attempts,
                visibility=inbox.visibility,
            )
        for adapter in enabled:
            await adapter.start(self.bot, inbox=self.inbox, intake=role != "worker")
            self.adapters.append(adapter)
            if self.worker is not None and isinstance(adapter, Answers):
                self.worker.register(adapter.name, adapter.answer)
            if self.bot.toolbox is not None and isinstance(adapter, Escalates) and adapter.escalation_channel:
                channel = adapter.escalation_channel
                self.bot.toolbox.register_escalator(adapter.name, adapter.post_escalation, channel=channel)
                say(f"escalations from {adapter.name} go to channel {channel}")
        if self.bot.recall is not None and self.bot.recall.preload:
            # A local embedding model takes seconds to load; better now than in the first user's turn.
            self._tasks.append(asyncio.create_task(self._warm_recall(), name="supportbot-warm-recall"))
        sweep = sweep_forever(self.store, self.settings.memory.sweep_interval)
        self._tasks.append(asyncio.create_task(sweep, name="supportbot-expiry-sweep"))
        self.bot.metrics.watch_inbox(self.inbox)
        self._tasks.append(asyncio.create_task(self._watch_inbox(), name="supportbot-inbox-stats"))
        if self.worker is not None:
            self.worker.start()
            answered = ", ".join(self.worker.platforms)
            say(
                f"inbox: answering {answered} messages recorded by any process ({role} role)"
                if answered
                else "inbox: idle, no Slack or Discord here (the web chat is answered in its request)"
            )
        else:
            say("inbox: web role, recording messages for the workers")

    async def _watch_inbox(self) -> None:
        """Refresh the inbox's depth and age for ``/metrics`` and ``/readyz``."""
        assert self.bot is not None and self.inbox is not None
        while not self._stopping:
            try:
                self.bot.metrics.inbox_stats(await self.inbox.stats())
            except StoreUnavailable as exc:
                log.warning("inbox statistics unavailable: %s", exc)
            await asyncio.sleep(INBOX_STATS_EVERY_S)

    async def _warm_recall(self) -> None:
        assert self.bot is not None and self.bot.recall is not None
        try:
            await self.bot.recall.embed("warm up")
            log.info("embedding model %s ready", self.bot.recall.model_name)
        except Exception as exc:  # recall is an extra; turns say so in the log when it keeps failing
            log.warning("embedding model %s failed to warm up: %s", self.bot.recall.model_name, type(exc).__name__)

    async def aclose(self) -> None:
        """Shut down without losing a turn.

        1. Adapters stop taking deliveries (the web server stops listening, so a load balancer or Slack moves
           to another process instead of receiving an error).
        2. The worker takes no more entries; the ones it is answering get ``server.shutdown_grace`` to finish.
           Those still running then are given back to the inbox unanswered, for the next worker (or this process
           restarted) to answer; their turns are cancelled before they save, so they are answered once.
        3. Adapters close (newest first), after their replies were posted; then the inbox and the store.
        """
        self._stopping = True
        deadline = time.monotonic() + self.settings.server.shutdown_grace
        for adapter in reversed(self.adapters):
            if isinstance(adapter, Drains):
                try:
                    await adapter.drain()
                except Exception:
                    log.exception("draining adapter %s failed", adapter.name)
        if self.worker is not None:
            await self.worker.stop(grace=max(deadline - time.monotonic(), 0.0))
        if self.bot is not None:
            await self.bot.aclose(grace=max(deadline - time.monotonic(), 0.0))
        for adapter in reversed(self.adapters):
            try:
                await adapter.aclose()
            except Exception:
                log.exception("closing adapter %s failed", adapter.name)
        self.adapters.clear()
        await cancel_and_wait(set(self._tasks))
        self._tasks.clear()
        if self.inbox is not None:
            await self.inbox.aclose()
        if self.store is not None:
            await self.store.aclose()

    async def serve(self, *, say: Callable[[str], None] = print) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start(say=say)
            say("supportbot is running; press Ctrl+C to stop")
            await stop.wait()
            say("shutting down")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.aclose()
