"""A local fake of the OpenAI chat completions API, served over real HTTP for tests.

The fake speaks enough of the OpenAI wire protocol for the real ``openai`` SDK (and therefore
``langchain_openai.ChatOpenAI``) to talk to it: non-streaming and SSE-streaming chat completions,
the model list, OpenAI-style error bodies, and a queue of injectable failures.

Example:
    ```python
    async with FakeOpenAI(responder=lambda messages: "hi") as fake:
        llm = ChatOpenAI(model="gpt-test", api_key="sk-test", base_url=fake.base_url)
        assert (await llm.ainvoke("hello")).content == "hi"
        assert fake.requests[0].prompt_text() == "hello"
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiohttp import web

from tests.fakes.loopback import LoopbackFake, serve_on_loopback

Responder = Callable[[list[dict[str, Any]]], str]
FailureKind = Literal["429", "500", "401", "hang", "break_stream", "bad_json"]

FAKE_MODEL_ID = "gpt-test"
_FAILURE_KINDS: frozenset[str] = frozenset(get_args(FailureKind))
_SHUTDOWN_TIMEOUT = 2.0


def content_text(content: Any) -> str:
    """Extracts the text of an OpenAI message ``content`` field.

    Args:
        content: A string, a list of content parts (only ``{"type": "text", "text": ...}`` parts
            contribute, joined with ``"\\n"``), or ``None``.

    Returns:
        The text, or an empty string when there is none.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def echo_responder(messages: list[dict[str, Any]]) -> str:
    """Default responder: echoes the last user message.

    Args:
        messages: The request's ``messages`` list.

    Returns:
        ``"echo: <content of the last user message>"`` (empty content if there is no user message).
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            return f"echo: {content_text(message.get('content'))}"
    return "echo: "


def estimate_tokens(text: str) -> int:
    """Estimates a token count the way the fake reports usage.

    Args:
        text: The text to measure.

    Returns:
        ``len(text) // 4 + 1``.
    """
    return len(text) // 4 + 1


@dataclass
class RecordedRequest:
    """One ``POST /v1/chat/completions`` request as received by the fake.

    Attributes:
        body: The parsed JSON body.
        headers: The request headers, with lower-cased names.
    """

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` list (empty if absent or malformed)."""
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        return [m for m in messages if isinstance(m, dict)]

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streaming (SSE) response."""
        return self.body.get("stream") is True

    @property
    def model(self) -> str:
        """The requested model name (empty if absent)."""
        model = self.body.get("model")
        return model if isinstance(model, str) else ""

    def prompt_text(self) -> str:
        """Joins the text of all messages with ``"\\n"``.

        Messages without any text (e.g. assistant tool-call messages) are skipped.

        Returns:
            The concatenated message texts.
        """
        texts = (content_text(m.get("content")) for m in self.messages)
        return "\n".join(t for t in texts if t)


@dataclass
class _Failure:
    kind: FailureKind
    retry_after: float


@dataclass
class _Completion:
    request: RecordedRequest
    text: str
    completion_id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


def _json_response(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return web.Response(body=json.dumps(payload).encode(), status=status, headers=all_headers)


def _error_response(
    status: int,
    message: str,
    *,
    error_type: str,
    code: str | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return _json_response(payload, status=status, headers=headers)


def _usage(completion: _Completion) -> dict[str, int]:
    prompt_tokens = estimate_tokens(completion.request.prompt_text())
    completion_tokens = estimate_tokens(completion.text)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion_body(completion: _Completion) -> dict[str, Any]:
    return {
        "id": completion.completion_id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.request.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(completion),
    }


def _chunk_body(completion: _Completion, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": completion.completion_id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.request.model,
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }


def _delta_choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _sse_event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _wants_usage(request: RecordedRequest) -> bool:
    options = request.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _sse_events(completion: _Completion, chunk_size: int) -> list[bytes]:
    include_usage = _wants_usage(completion.request)
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    events = [_sse_event(_chunk_body(completion, [_delta_choice({"role": "assistant", "content": ""})], **extra))]
    text = completion.text
    for start in range(0, len(text), chunk_size):
        piece = text[start : start + chunk_size]
        events.append(_sse_event(_chunk_body(completion, [_delta_choice({"content": piece})], **extra)))
    events.append(_sse_event(_chunk_body(completion, [_delta_choice({}, "stop")], **extra)))
    if include_usage:
        events.append(_sse_event(_chunk_body(completion, [], usage=_usage(completion))))
    events.append(b"data: [DONE]\n\n")
    return events


def _abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


class FakeOpenAI(LoopbackFake):
    """An OpenAI-compatible HTTP server on ``127.0.0.1`` for tests.

    Routes:
        ``POST /v1/chat/completions``: a ``chat.completion`` object, or an SSE stream of
        ``chat.completion.chunk`` objects when the body has ``"stream": true``.
        ``GET /v1/models``: a list holding one model.
        Anything else: a 404 OpenAI-style error.

    Attributes:
        requests: Every ``POST /v1/chat/completions`` request with a JSON object body, in arrival
            order, including those answered with an injected failure.
        delay: Seconds to sleep before answering each chat completion request; settable at runtime.
        chunk_size: Characters of reply text per streamed content chunk.
    """

    def __init__(self, *, responder: Responder | None = None, delay: float = 0.0, chunk_size: int = 8) -> None:
        """Configures the fake without starting it.

        Args:
            responder: Maps a request's ``messages`` to the reply text. Defaults to
                :func:`echo_responder` (``"echo: <last user message>"``).
            delay: Seconds to sleep before answering each chat completion request.
            chunk_size: Characters of reply text per streamed content chunk.

        Raises:
            ValueError: If ``chunk_size`` is not positive or ``delay`` is negative.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.responder: Responder = responder or echo_responder
        self.delay = delay
        self.chunk_size = chunk_size
        self.requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://127.0.0.1:<port>/v1``.

        Raises:
            RuntimeError: If the server has not been started.
        """
        if self._base_url is None:
            raise RuntimeError("FakeOpenAI is not running; call start() first")
        return self._base_url

    async def start(self) -> str:
        """Binds ``127.0.0.1`` on a free port and starts serving.

        Returns:
            The base URL, ``http://127.0.0.1:<port>/v1``.

        Raises:
            RuntimeError: If the server is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FakeOpenAI is already running")
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_chat_completions)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        runner, host, port = await serve_on_loopback(app, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        self._runner = runner
        self._base_url = f"http://{host}:{port}/v1"
        return self._base_url

    async def aclose(self) -> None:
        """Stops the server, releasing any hanging or delayed requests first.

        Safe to call more than once, and before :meth:`start`.
        """
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def fail_next(self, kind: FailureKind, *, times: int = 1, retry_after: float = 1.0) -> None:
        """Queues a failure for the next ``times`` chat completion requests.

        Queued failures are consumed in order, one per request, before any normal answer.

        Args:
            kind: ``"429"``: rate limit with a ``Retry-After`` header; ``"500"``: server error;
                ``"401"``: invalid API key; ``"hang"``: never answer until :meth:`aclose`;
                ``"break_stream"``: for streams, send the first chunks then drop the connection
                without ``[DONE]``, otherwise drop it without a response; ``"bad_json"``: status 200
                with a body that is not JSON.
            times: How many consecutive requests fail this way.
            retry_after: Seconds advertised in the ``Retry-After`` header of ``"429"`` responses.

        Raises:
            ValueError: If ``kind`` is unknown, ``times`` is below 1 or ``retry_after`` is negative.
        """
        if kind not in _FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {sorted(_FAILURE_KINDS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if retry_after < 0:
            raise ValueError("retry_after must not be negative")
        self._failures.extend(_Failure(kind, retry_after) for _ in range(times))

    def pending_failures(self) -> int:
        """Returns how many queued failures have not been consumed yet."""
        return len(self._failures)

    async def _handle_chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error_response(
                400, "The request body must be a JSON object.", error_type="invalid_request_error", code=None
            )
        recorded = RecordedRequest(body=body, headers={k.lower(): v for k, v in request.headers.items()})
        self.requests.append(recorded)
        failure = self._failures.popleft() if self._failures else None
        await self._sleep(self.delay)
        if failure is not None:
            return await self._fail(request, recorded, failure)
        completion = _Completion(recorded, self.responder(recorded.messages))
        if recorded.stream:
            return await self._stream(request, completion)
        return _json_response(_completion_body(completion))

    async def _fail(self, request: web.Request, recorded: RecordedRequest, failure: _Failure) -> web.StreamResponse:
        if failure.kind == "429":
            return _error_response(
                429,
                "Rate limit reached for requests (injected by FakeOpenAI).",
                error_type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": f"{failure.retry_after:g}"},
            )
        if failure.kind == "500":
            return _error_response(
                500, "The server had an error (injected by FakeOpenAI).", error_type="server_error", code="server_error"
            )
        if failure.kind == "401":
            return _error_response(
                401,
                "Incorrect API key provided (injected by FakeOpenAI).",
                error_type="invalid_request_error",
                code="invalid_api_key",
            )
        if failure.kind == "hang":
            await self._closing.wait()
            return _error_response(
                503, "FakeOpenAI shut down.", error_type="server_error", code=None, headers={"Connection": "close"}
            )
        if failure.kind == "bad_json":
            return web.Response(body=b"<html>this is not JSON", headers={"Content-Type": "application/json"})
        if recorded.stream:
            completion = _Completion(recorded, self.responder(recorded.messages))
            return await self._stream(request, completion, break_after=2)
        _abort_connection(request)
        return web.Response(status=204)

    async def _stream(
        self, request: web.Request, completion: _Completion, *, break_after: int | None = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        events = _sse_events(completion, self.chunk_size)
        for index, event in enumerate(events):
            if break_after is not None and index >= break_after:
                _abort_connection(request)
                return response
            await response.write(event)
        await response.write_eof()
        return response

    async def _handle_models(self, request: web.Request) -> web.Response:
        model = {"id": FAKE_MODEL_ID, "object": "model", "created": 0, "owned_by": "fake-openai"}
        return _json_response({"object": "list", "data": [model]})

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return _error_response(
            404,
            f"Unknown request URL: {request.method} {request.path}.",
            error_type="invalid_request_error",
            code="unknown_url",
        )

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
