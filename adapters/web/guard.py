"""Who a web client is, whether it may call a route, and how long it may take to send its request.

- **Identity.** A request that presents one of the configured bearer tokens is that token's client
  (``token:<fingerprint>``); any other is its network address (``ip:<address>``). ``X-Forwarded-For`` is believed
  only from ``web.trusted_proxies``, so a client cannot pick its own address. The core's rate limit and the tool
  quotas count per identity, not per ``session_id``, which the client chooses freely.
- **Tokens.** With ``SUPPORTBOT_WEB_TOKEN`` set (several tokens may be given, comma-separated: one per integration),
  ``/api/*`` needs ``Authorization: Bearer <token>``; ``/metrics`` needs it too with ``web.metrics_require_token``.
- **Slow clients.** A request body must arrive within ``server.body_timeout``; the request line and headers, and
  an idle keep-alive connection, within ``server.keepalive_timeout`` (aiohttp's keep-alive timer, which also runs
  while a request's head is incomplete).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_KEY = web.RequestKey("supportbot_client", str)
FINGERPRINT_CHARS = 12  # of a token's SHA-256: names the client in logs and limits without revealing the token


def token_identity(token: str) -> str:
    """The identity of a client that authenticates with ``token``."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_CHARS]


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the right-most address in
    ``X-Forwarded-For`` that is not itself a trusted proxy (the left part of the header is the client's to write)."""
    address = _address(peer or "")
    if address is None:
        return peer or "unknown"
    if forwarded_for is None or not any(address in net for net in trusted):
        return str(address)
    for hop in reversed(forwarded_for.split(",")):
        forwarded = _address(hop)
        if forwarded is None:
            break  # a malformed hop: the chain cannot be followed further, so the last trusted address stands
        address = forwarded
        if not any(address in net for net in trusted):
            break
    return str(address)


def guard_middleware(
    tokens: Sequence[str], *, trusted_proxies: Sequence[str] = (), protect_metrics: bool = False
) -> Middleware:
    """Name the client of every request (``request[CLIENT_KEY]``) and require a bearer token where one is due."""
    accepted = [(f"Bearer {token}".encode(), token_identity(token)) for token in tokens]
    trusted = [ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies]

    def protected(request: web.Request) -> bool:
        if request.method == "OPTIONS":
            return False  # CORS preflights carry no credentials
        return request.path.startswith("/api/") or (protect_metrics and request.path == "/metrics")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        # Every token is compared, so the time taken says nothing about which one nearly matched.
        matches = [identity for expected, identity in accepted if hmac.compare_digest(given, expected)]
        if matches:
            request[CLIENT_KEY] = matches[0]
        else:
            if accepted and protected(request):
                return web.json_response(
                    {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
            peer = request.transport.get_extra_info("peername") if request.transport is not None else None
            host = peer[0] if isinstance(peer, tuple) and peer else None
            request[CLIENT_KEY] = "ip:" + client_address(host, request.headers.get("X-Forwarded-For"), trusted)
        return await handler(request)

    return guard


def body_timeout_middleware(timeout: float) -> Middleware:
    """Read a request's body before its handler runs, within ``timeout`` seconds; a client that sends it slower gets
    408 and its connection closed, instead of holding a connection and a handler for as long as it likes."""

    @web.middleware
    async def read_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.can_read_body:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()  # kept by aiohttp: the handler's own read() returns it at once
            except TimeoutError:
                response = web.json_response(
                    {"error": f"the request body did not arrive within {timeout:g} s"}, status=408
                )
                response.force_close()
                return response
        return await handler(request)

    return read_in_time
