"""The HTTP surface on aiohttp: health and readiness for now; the web chat and API build on it."""

from __future__ import annotations

import logging
from typing import ClassVar

from aiohttp import web

from bot.config import Settings, redact_url
from bot.core import SupportBot
from bot.errors import StoreUnavailable
from bot.model import describe_model

log = logging.getLogger("supportbot.web")

BOT_KEY = web.AppKey("bot", SupportBot)
SETTINGS_KEY = web.AppKey("settings", Settings)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers. 503 with the reason otherwise."""
    bot = request.app[BOT_KEY]
    settings = request.app[SETTINGS_KEY]
    try:
        await bot.store.ping()
    except StoreUnavailable as exc:
        return web.json_response({"status": "unavailable", "reason": f"store: {exc}"}, status=503)
    return web.json_response(
        {"status": "ready", "store": redact_url(settings.store_url), "model": describe_model(settings)}
    )


def create_app(bot: SupportBot, settings: Settings) -> web.Application:
    """The aiohttp application with every HTTP route."""
    app = web.Application()
    app[BOT_KEY] = bot
    app[SETTINGS_KEY] = settings
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class WebAdapter:
    """Serves the HTTP routes on ``server.host:server.port`` (``PORT`` overrides)."""

    name: ClassVar[str] = "web"

    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @classmethod
    def enabled(cls, settings: Settings) -> tuple[bool, str]:
        server = settings.server
        return True, f"web: on at http://{server.host}:{server.port} (/healthz, /readyz)"

    async def start(self, bot: SupportBot) -> None:
        self._runner = web.AppRunner(create_app(bot, self._settings), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.server.host, self._settings.server.port)
        await site.start()
        sockets = self._runner.addresses
        self.port = sockets[0][1] if sockets else self._settings.server.port

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
