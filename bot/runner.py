"""The runner owns every long-lived thing of ``supportbot serve``: store, bot, adapters, background tasks.

It starts them in order and closes them in reverse order, giving in-flight turns a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from bot.adapter import Adapter, Drains, Escalates, HostsHttp, ServesHttp
from bot.app import build_bot, build_store, describe_setup
from bot.config import Settings
from bot.core import SupportBot
from bot.errors import StoreUnavailable
from bot.memory import SessionStore

log = logging.getLogger("supportbot.runner")

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
        self._tasks: list[asyncio.Task[None]] = []

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
        for adapter in enabled:
            await adapter.start(self.bot)
            self.adapters.append(adapter)
            if self.bot.toolbox is not None and isinstance(adapter, Escalates) and adapter.escalation_channel:
                channel = adapter.escalation_channel
                self.bot.toolbox.register_escalator(adapter.name, adapter.post_escalation, channel=channel)
                say(f"escalations from {adapter.name} go to channel {channel}")
        if self.bot.recall is not None and self.bot.recall.preload:
            # A local embedding model takes seconds to load; better now than in the first user's turn.
            self._tasks.append(asyncio.create_task(self._warm_recall(), name="supportbot-warm-recall"))
        sweep = sweep_forever(self.store, self.settings.memory.sweep_interval)
        self._tasks.append(asyncio.create_task(sweep, name="supportbot-expiry-sweep"))

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
        2. In-flight turns finish within ``server.shutdown_grace``; later ones are refused.
        3. Adapters close (newest first), after their replies were posted; then the store.
        """
        for adapter in reversed(self.adapters):
            if isinstance(adapter, Drains):
                try:
                    await adapter.drain()
                except Exception:
                    log.exception("draining adapter %s failed", adapter.name)
        if self.bot is not None:
            await self.bot.aclose(grace=self.settings.server.shutdown_grace)
        for adapter in reversed(self.adapters):
            try:
                await adapter.aclose()
            except Exception:
                log.exception("closing adapter %s failed", adapter.name)
        self.adapters.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
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
