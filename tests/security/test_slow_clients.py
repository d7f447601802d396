"""Slow clients are cut off: connections that trickle their headers or their body, or sit idle, are closed by the
server (real sockets on 127.0.0.1, a bounded number of connections, short configured timeouts), and the server keeps
answering everyone else meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.web import WebAdapter
from bot.app import build_bot
from tests.helpers import settings_for

CONNECTIONS = 20  # of each kind; the 300 only multiplies the same code path
TRICKLE_S = 0.05  # a byte this often: far slower than any real client, far faster than the timeouts' bound
GENEROUS_BOUND_S = 60.0  # "closed eventually": only a server that never closes them gets this far


@pytest.fixture
async def server() -> AsyncIterator[int]:
    settings = settings_for(
        SUPPORTBOT_MEMORY__STORE_URL="memory://",
        SUPPORTBOT_SERVER__PORT="0",
        SUPPORTBOT_SERVER__KEEPALIVE_TIMEOUT="0.5s",
        SUPPORTBOT_SERVER__BODY_TIMEOUT="0.5s",
    )
    bot = build_bot(settings)
    web = WebAdapter(settings=settings)
    await web.start(bot)
    assert web.port
    yield web.port
    await web.aclose()
    await bot.aclose()


async def trickle_until_closed(port: int, head: bytes, drip: bytes) -> bytes:
    """Send ``head``, then ``drip`` one byte at a time until the server closes the connection; returns what the
    server said before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(head)
        await writer.drain()
        for byte in drip:
            try:
                chunk = await asyncio.wait_for(reader.read(4096), TRICKLE_S)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                return received
            if chunk:
                received += chunk
                continue
            writer.write(bytes([byte]))
            await writer.drain()
        raise AssertionError("the server read the whole trickle without closing")
    except (ConnectionResetError, BrokenPipeError):
        return received
    finally:
        writer.close()


async def test_slow_headers_slow_bodies_and_idle_connections_are_closed(server: int) -> None:
    header_head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\n"
    body_head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"

    async def idle_connection() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server)
        try:
            return await reader.read()  # only the server can end this
        finally:
            writer.close()

    async with asyncio.timeout(GENEROUS_BOUND_S):
        results = await asyncio.gather(
            *(trickle_until_closed(server, header_head, b"X-Slow: " + b"a" * 5_000) for _ in range(CONNECTIONS)),
            *(trickle_until_closed(server, body_head, b'{"session_id": "' + b"s" * 4_980) for _ in range(CONNECTIONS)),
            *(idle_connection() for _ in range(CONNECTIONS)),
            normal_requests(server),
        )
    headers, bodies = results[:CONNECTIONS], results[CONNECTIONS : 2 * CONNECTIONS]
    idles = results[2 * CONNECTIONS : 3 * CONNECTIONS]
    assert all(b"200 OK" not in answer for answer in headers), "a request with an unfinished head is never served"
    assert all(answer == b"" or answer.startswith(b"HTTP/1.1 408") for answer in bodies), bodies[:3]
    assert any(answer.startswith(b"HTTP/1.1 408") for answer in bodies), "the slow body is told why"
    assert idles == [b""] * CONNECTIONS


async def normal_requests(port: int) -> bytes:
    """While the slow clients hang on, an ordinary client is still answered."""
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(
                f"http://127.0.0.1:{port}/api/chat", json={"session_id": "normal01", "message": "hello"}
            ) as response:
                assert response.status == 200
    return b""
