"""The web surface: the chat page, ``/api/*`` and the operations endpoints, served by aiohttp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from aiohttp import web

from adapters.web.app import create_app
from bot.adapter import HttpRoute
from bot.config import Settings
from bot.core import SupportBot
from bot.inbox import Inbox

__all__ = ["WebAdapter", "create_app"]

# After answering a request whose body it did not read in full (a 408 to a slow body, a 401, a 413), the server
# reads and drops the rest for this long, so the client sees the answer, then closes (aiohttp's default is 10 s).
LINGER_S = 2.0


class WebAdapter:
    """Serves every HTTP route on ``server.host:server.port`` (``PORT`` overrides)."""

    name: ClassVar[str] = "web"

    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings
        self._runner: web.AppRunner | None = None
        self._routes: list[HttpRoute] = []
        self.port: int | None = None

    @classmethod
    def enabled(cls, settings: Settings) -> tuple[bool, str]:
        server = settings.server
        shown_host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
        return (
            True,
            f"web: on — chat at http://{shown_host}:{server.port}/ (also /api/chat, /healthz, /readyz, /metrics)",
        )

    def add_routes(self, routes: Sequence[HttpRoute]) -> None:
        self._routes.extend(routes)

    async def start(self, bot: SupportBot, *, inbox: Inbox | None = None, intake: bool = True) -> None:
        # The web chat is answered here, in the request: the browser waits on the connection and resends the same
        # message_id if it drops, so it needs no inbox entry. A worker-role process serves no chat at all.
        app = create_app(bot, self._settings, inbox=inbox, chat_routes=intake)
        for method, path, handler in self._routes:
            app.router.add_route(method, path, handler)
        # In-flight requests get the whole grace period to finish their turns before handlers are cancelled.
        server = self._settings.server
        # The keep-alive timer also runs while a request's line and headers trickle in, so it bounds slow headers too.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=server.shutdown_grace,
            keepalive_timeout=server.keepalive_timeout,
            lingering_time=LINGER_S,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.server.host, self._settings.server.port)
        await site.start()
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else self._settings.server.port

    async def drain(self) -> None:
        """Stop listening; requests already received (and their turns) carry on."""
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
