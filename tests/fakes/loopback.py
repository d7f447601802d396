"""What every local fake shares: serving an aiohttp app on a free loopback port, and ``async with``."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web


async def serve_on_loopback(app: web.Application, *, shutdown_timeout: float) -> tuple[web.AppRunner, str, int]:
    """Start ``app`` on ``127.0.0.1`` at a free port; returns its runner, host and port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, str(host), int(port)


class LoopbackFake:
    """``async with fake:`` starts it and closes it; subclasses define ``start`` and ``aclose``."""

    async def start(self) -> object:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
