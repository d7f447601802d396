"""A local fake of a helpdesk's ticket webhook, served over real HTTP for tests.

Example:
    ```python
    async with FakeTicketWebhook() as fake:
        hook = TicketWebhook(fake.url, token="t0k3n")
        ticket = await hook.file({"summary": "VPN down"}, idempotency_key="s:e")
        assert ticket.id == "INC-0001" and fake.requests[0].json["summary"] == "VPN down"
    ```
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from tests.fakes.loopback import LoopbackFake, serve_on_loopback

TICKET_PATH = "/hooks/tickets"
_SHUTDOWN_TIMEOUT = 2.0

# Maps the next ticket's id and URL to the body of a successful answer: a JSON value, or raw bytes.
Answer = Callable[[str, str], Any]


def default_answer(ticket_id: str, url: str) -> dict[str, str]:
    """``{"id": ticket_id, "url": url}``."""
    return {"id": ticket_id, "url": url}


@dataclass
class ReceivedRequest:
    """One request as the fake received it.

    Attributes:
        method: The HTTP method.
        path: The path, without the query string.
        query: The query string's parameters.
        headers: The headers, with lower-cased names.
        json: The parsed JSON body, or ``None`` when the body is not JSON.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class _Failure:
    kind: int | Literal["hang", "drop"]
    retry_after: str | None


class FakeTicketWebhook(LoopbackFake):
    """A ticket webhook on ``127.0.0.1``: records every request and files numbered tickets (``INC-0001``…).

    Any method and path is accepted and recorded; successful answers are ``200`` with
    ``{"id": "INC-000N", "url": "http://<host>/tickets/INC-000N"}`` unless ``answer`` says otherwise.

    Attributes:
        requests: Every request received, in arrival order, including those answered with a failure.
        answer: Builds the body of a successful answer; settable at runtime.
        status: The status of a successful answer; settable at runtime.
    """

    def __init__(self, *, answer: Answer = default_answer, status: int = 200) -> None:
        self.answer = answer
        self.status = status
        self.requests: list[ReceivedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._filed = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._origin: str | None = None

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``.

        Raises:
            RuntimeError: If the server has not been started.
        """
        if self._origin is None:
            raise RuntimeError("FakeTicketWebhook is not running; call start() first")
        return self._origin

    @property
    def url(self) -> str:
        """The webhook URL, ``http://127.0.0.1:<port>/hooks/tickets``."""
        return self.origin + TICKET_PATH

    @property
    def posts(self) -> list[ReceivedRequest]:
        """The ``POST`` requests, in arrival order."""
        return [r for r in self.requests if r.method == "POST"]

    async def start(self) -> str:
        """Binds ``127.0.0.1`` on a free port and starts serving; returns :attr:`url`.

        Raises:
            RuntimeError: If the server is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FakeTicketWebhook is already running")
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner, host, port = await serve_on_loopback(app, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self._runner = runner
        self._origin = f"http://{host}:{port}"
        return self.url

    async def aclose(self) -> None:
        """Stops the server, releasing hanging requests first. Safe to call more than once."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def fail_next(
        self, kind: int | Literal["hang", "drop"], *, times: int = 1, retry_after: float | str | None = None
    ) -> None:
        """Queues a failure for the next ``times`` requests, consumed one per request before any ticket is filed.

        Args:
            kind: An HTTP status (``500``, ``429``, ``400``…) answered with a JSON error body; ``"hang"``: never
                answer until :meth:`aclose` (to trigger client timeouts); ``"drop"``: close the connection
                without an answer.
            times: How many consecutive requests fail this way.
            retry_after: The ``Retry-After`` header to send with a status failure, if any.

        Raises:
            ValueError: If ``kind`` is neither a 4xx/5xx status nor ``"hang"``/``"drop"``, or ``times`` is below 1.
        """
        if kind not in ("hang", "drop") and not (isinstance(kind, int) and 400 <= kind < 600):
            raise ValueError(f"kind must be a 4xx or 5xx status, 'hang' or 'drop', not {kind!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        header = None if retry_after is None else str(retry_after)
        self._failures.extend(_Failure(kind, header) for _ in range(times))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                json=body,
            )
        )
        failure = self._failures.popleft() if self._failures else None
        if failure is None:
            return self._file()
        if failure.kind == "hang":
            await self._closing.wait()
            return web.Response(status=503, headers={"Connection": "close"})
        if failure.kind == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        headers = {} if failure.retry_after is None else {"Retry-After": failure.retry_after}
        return web.json_response({"error": f"injected {failure.kind}"}, status=failure.kind, headers=headers)

    def _file(self) -> web.Response:
        self._filed += 1
        ticket_id = f"INC-{self._filed:04d}"
        body = self.answer(ticket_id, f"{self.origin}/tickets/{ticket_id}")
        if isinstance(body, bytes):
            return web.Response(body=body, status=self.status, content_type="text/plain")
        return web.json_response(body, status=self.status)
