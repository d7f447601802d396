"""A local fake of the OpenAI chat completions and embeddings APIs, served over real HTTP for tests.

The fake speaks enough of the OpenAI wire protocol for the real ``openai`` SDK (and therefore
``langchain_openai.ChatOpenAI`` and ``OpenAIEmbeddings``) to talk to it: non-streaming and
SSE-streaming chat completions with text or tool calls, embeddings, the model list, OpenAI-style
error bodies, and a queue of injectable failures.

Example:
    ```python
    async with FakeOpenAI(responder=lambda messages: "hi") as fake:
        llm = ChatOpenAI(model="gpt-test", api_key="sk-test", base_url=fake.base_url)
        assert (await llm.ainvoke("hello")).content == "hi"
        assert fake.requests[0].prompt_text() == "hello"
    ```

    A responder that calls a tool first, then answers once the tool result is back:

    ```python
    def responder(messages):
        if not last_tool_results(messages):
            return ToolCallReply([("create_ticket", {"title": "Printer offline"})])
        return "Filed it"
    ```
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import json
import math
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiohttp import web

from tests.fakes.loopback import LoopbackFake, serve_on_loopback

FailureKind = Literal["429", "500", "401", "hang", "break_stream", "bad_json"]
Endpoint = Literal["chat", "embeddings"]

EmbeddingInput = str | list[int]

FAKE_MODEL_ID = "gpt-test"
_FAILURE_KINDS: frozenset[str] = frozenset(get_args(FailureKind))
_ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)
_SHUTDOWN_TIMEOUT = 2.0
_WORD = re.compile(r"\w+")


@dataclass
class ToolCallReply:
    """A responder's answer that calls tools instead of (or besides) replying with text.

    Attributes:
        calls: ``(tool name, arguments)`` pairs, answered as ``tool_calls`` in this order.
        content: Assistant text sent along with the calls; ``""`` sends ``content: null``.
    """

    calls: list[tuple[str, dict[str, Any]]]
    content: str = ""

    def __post_init__(self) -> None:
        if not self.calls:
            raise ValueError("ToolCallReply needs at least one call; return a str to reply with text only")


Responder = Callable[[list[dict[str, Any]]], "str | ToolCallReply | Awaitable[str | ToolCallReply]"]


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


def last_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns the tool results answering the latest assistant message.

    Args:
        messages: The request's ``messages`` list.

    Returns:
        The ``role: "tool"`` messages after the last assistant message, in order; empty when the
        model has not called a tool since it last spoke (or never spoke).
    """
    results: list[dict[str, Any]] = []
    for message in reversed(messages):
        role = message.get("role")
        if role == "assistant":
            break
        if role == "tool":
            results.append(message)
    results.reverse()
    return results


def fake_embedding(text: str, dims: int) -> list[float]:
    """Computes the fake's deterministic embedding of ``text``.

    Each lower-cased word (regex ``\\w+``) adds ``+1`` or ``-1`` to one of ``dims`` buckets, both
    picked by a BLAKE2b hash of the word, and the result is L2-normalised. Texts sharing words thus
    tend to have positive cosine similarity, and equal texts get equal vectors in every process.

    Args:
        text: The text to embed. Text without any word characters is hashed as a single word.
        dims: The vector length.

    Returns:
        A unit-length vector of ``dims`` floats.

    Raises:
        ValueError: If ``dims`` is below 1.
    """
    if dims < 1:
        raise ValueError("dims must be at least 1")
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()) or [text]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dims
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        # Words cancelled out exactly; any fixed unit vector keeps the "unit length" promise.
        vector[0] = norm = 1.0
    return [x / norm for x in vector]


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

    @property
    def tools(self) -> list[str]:
        """The names of the tools offered in the request's ``tools`` list, in order."""
        tools = self.body.get("tools")
        if not isinstance(tools, list):
            return []
        functions = (tool.get("function") for tool in tools if isinstance(tool, dict))
        return [f["name"] for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]

    @property
    def tool_choice(self) -> Any:
        """The request's ``tool_choice`` as sent (``"auto"``, ``"required"``, a dict...), or ``None``."""
        return self.body.get("tool_choice")

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
class _ToolCall:
    name: str
    arguments: str
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def wire(self) -> dict[str, Any]:
        return {"id": self.call_id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class _Completion:
    request: RecordedRequest
    text: str
    tool_calls: list[_ToolCall] = field(default_factory=list)
    completion_id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def answering(cls, request: RecordedRequest, reply: str | ToolCallReply) -> _Completion:
        if isinstance(reply, str):
            return cls(request, reply)
        calls = [_ToolCall(name, json.dumps(arguments)) for name, arguments in reply.calls]
        return cls(request, reply.content, calls)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


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


def _invalid_request(message: str) -> web.Response:
    return _error_response(400, message, error_type="invalid_request_error", code=None)


def _usage(completion: _Completion) -> dict[str, int]:
    prompt_tokens = estimate_tokens(completion.request.prompt_text())
    completion_tokens = estimate_tokens(completion.text + "".join(c.name + c.arguments for c in completion.tool_calls))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion_body(completion: _Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text, "refusal": None}
    if completion.tool_calls:
        message["content"] = completion.text or None
        message["tool_calls"] = [call.wire() for call in completion.tool_calls]
    return {
        "id": completion.completion_id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.request.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": completion.finish_reason,
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


def _pieces(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _deltas(completion: _Completion, chunk_size: int) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas.extend({"content": piece} for piece in _pieces(completion.text, chunk_size))
    for index, call in enumerate(completion.tool_calls):
        head = {"index": index, **call.wire()}
        head["function"] = {"name": call.name, "arguments": ""}
        deltas.append({"tool_calls": [head]})
        deltas.extend(
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _pieces(call.arguments, chunk_size)
        )
    if completion.tool_calls and not completion.text:
        # Like OpenAI: without text, the role arrives in the first tool-call delta, with null content.
        deltas[:2] = [{"role": "assistant", "content": None, **deltas[1]}]
    return deltas


def _sse_events(completion: _Completion, chunk_size: int) -> list[bytes]:
    include_usage = _wants_usage(completion.request)
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    events = [
        _sse_event(_chunk_body(completion, [_delta_choice(delta)], **extra))
        for delta in _deltas(completion, chunk_size)
    ]
    events.append(_sse_event(_chunk_body(completion, [_delta_choice({}, completion.finish_reason)], **extra)))
    if include_usage:
        events.append(_sse_event(_chunk_body(completion, [], usage=_usage(completion))))
    events.append(b"data: [DONE]\n\n")
    return events


class _InvalidRequest(Exception):
    """A request the real API would reject with a 400; the message becomes the error message."""


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _embedding_inputs(raw: Any) -> list[EmbeddingInput]:
    if isinstance(raw, str) and raw:
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(item, str) and item for item in raw):
            return list(raw)
        if all(_is_token_id(item) for item in raw):
            return [list(raw)]
        if all(isinstance(item, list) and item and all(_is_token_id(t) for t in item) for item in raw):
            return [list(item) for item in raw]
    raise _InvalidRequest(
        "'input' must be a non-empty string, a list of non-empty strings, a list of token ids"
        " or a list of lists of token ids."
    )


def _embedding_dims(body: dict[str, Any], default: int) -> int:
    dims = body.get("dimensions", default)
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        raise _InvalidRequest("'dimensions' must be a positive integer.")
    return dims


def _encoding_format(body: dict[str, Any]) -> str:
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _InvalidRequest("'encoding_format' must be 'float' or 'base64'.")
    return str(encoding)


def _embed(item: EmbeddingInput, dims: int) -> list[float]:
    # Token ids have no text; their decimal forms stand in as words so equal ids give equal vectors.
    return fake_embedding(item if isinstance(item, str) else " ".join(map(str, item)), dims)


def _encode_embedding(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    # What the API sends for "base64": packed little-endian float32, which the SDK decodes itself.
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _embeddings_body(inputs: list[EmbeddingInput], *, model: Any, dims: int, encoding: str) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": index, "embedding": _encode_embedding(_embed(item, dims), encoding)}
        for index, item in enumerate(inputs)
    ]
    tokens = sum(estimate_tokens(item) if isinstance(item, str) else len(item) for item in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model if isinstance(model, str) else "",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


class FakeOpenAI(LoopbackFake):
    """An OpenAI-compatible HTTP server on ``127.0.0.1`` for tests.

    Routes:
        ``POST /v1/chat/completions``: a ``chat.completion`` object, or an SSE stream of
        ``chat.completion.chunk`` objects when the body has ``"stream": true``; the reply is text or,
        when the responder returns a :class:`ToolCallReply`, tool calls.
        ``POST /v1/embeddings``: a list of :func:`fake_embedding` vectors, as floats or base64.
        ``GET /v1/models``: a list holding one model.
        Anything else: a 404 OpenAI-style error.

    Attributes:
        requests: Every ``POST /v1/chat/completions`` request with a JSON object body, in arrival
            order, including those answered with an injected failure.
        embedding_requests: The inputs of every valid ``POST /v1/embeddings`` request, in arrival
            order, including those answered with an injected failure; each entry lists the
            request's inputs as strings or token-id lists (a lone string or token list becomes a
            one-item list).
        delay: Seconds to sleep before answering each chat completion request; settable at runtime.
        chunk_size: Characters of reply text, and of tool-call arguments, per streamed chunk.
        embedding_dims: Length of embedding vectors when a request does not ask for ``dimensions``.
    """

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        delay: float = 0.0,
        chunk_size: int = 8,
        embedding_dims: int = 64,
    ) -> None:
        """Configures the fake without starting it.

        Args:
            responder: Maps a request's ``messages`` to the reply text, or to a
                :class:`ToolCallReply` to call tools. Defaults to :func:`echo_responder`
                (``"echo: <last user message>"``). It may be a coroutine function: the
                request then waits for it, so a test can hold one answer back until an event.
            delay: Seconds to sleep before answering each chat completion request.
            chunk_size: Characters of reply text, and of tool-call arguments, per streamed chunk.
            embedding_dims: Length of embedding vectors when a request does not ask for ``dimensions``.

        Raises:
            ValueError: If ``chunk_size`` or ``embedding_dims`` is not positive or ``delay`` is negative.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if embedding_dims < 1:
            raise ValueError("embedding_dims must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.responder: Responder = responder or echo_responder
        self.delay = delay
        self.chunk_size = chunk_size
        self.embedding_dims = embedding_dims
        self.requests: list[RecordedRequest] = []
        self.embedding_requests: list[list[EmbeddingInput]] = []
        self._failures: dict[Endpoint, deque[_Failure]] = {endpoint: deque() for endpoint in _ENDPOINTS}
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
        app.router.add_post("/v1/embeddings", self._handle_embeddings)
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

    def fail_next(
        self, kind: FailureKind, *, times: int = 1, retry_after: float = 1.0, endpoint: Endpoint = "chat"
    ) -> None:
        """Queues a failure for the next ``times`` requests to ``endpoint``.

        Each endpoint has its own queue, so a bot that embeds every turn does not swallow a failure
        meant for its chat completion. Queued failures are consumed in order, one per request,
        before any normal answer.

        Args:
            kind: ``"429"``: rate limit with a ``Retry-After`` header; ``"500"``: server error;
                ``"401"``: invalid API key; ``"hang"``: never answer until :meth:`aclose`;
                ``"break_stream"``: for streams, send the first chunks then drop the connection
                without ``[DONE]``, otherwise drop it without a response; ``"bad_json"``: status 200
                with a body that is not JSON.
            times: How many consecutive requests fail this way.
            retry_after: Seconds advertised in the ``Retry-After`` header of ``"429"`` responses.
            endpoint: ``"chat"`` for ``POST /v1/chat/completions``, ``"embeddings"`` for
                ``POST /v1/embeddings``.

        Raises:
            ValueError: If ``kind`` or ``endpoint`` is unknown, ``times`` is below 1 or
                ``retry_after`` is negative.
        """
        if kind not in _FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {sorted(_FAILURE_KINDS)}")
        if endpoint not in _ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {list(_ENDPOINTS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if retry_after < 0:
            raise ValueError("retry_after must not be negative")
        self._failures[endpoint].extend(_Failure(kind, retry_after) for _ in range(times))

    def pending_failures(self, endpoint: Endpoint = "chat") -> int:
        """Returns how many failures queued for ``endpoint`` have not been consumed yet."""
        return len(self._failures[endpoint])

    async def _handle_chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        if body is None:
            return _invalid_request("The request body must be a JSON object.")
        recorded = RecordedRequest(body=body, headers={k.lower(): v for k, v in request.headers.items()})
        self.requests.append(recorded)
        failure = self._next_failure("chat")
        await self._sleep(self.delay)
        if failure is not None:
            return await self._fail(request, failure, recorded)
        completion = _Completion.answering(recorded, await self._reply(recorded))
        if recorded.stream:
            return await self._stream(request, completion)
        return _json_response(_completion_body(completion))

    async def _handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        if body is None:
            return _invalid_request("The request body must be a JSON object.")
        try:
            inputs = _embedding_inputs(body.get("input"))
            dims = _embedding_dims(body, self.embedding_dims)
            encoding = _encoding_format(body)
        except _InvalidRequest as error:
            return _invalid_request(str(error))
        self.embedding_requests.append(inputs)
        failure = self._next_failure("embeddings")
        if failure is not None:
            return await self._fail(request, failure)
        return _json_response(_embeddings_body(inputs, model=body.get("model"), dims=dims, encoding=encoding))

    async def _fail(
        self, request: web.Request, failure: _Failure, recorded: RecordedRequest | None = None
    ) -> web.StreamResponse:
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
        if recorded is not None and recorded.stream:
            completion = _Completion.answering(recorded, await self._reply(recorded))
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

    async def _reply(self, recorded: RecordedRequest) -> str | ToolCallReply:
        reply = self.responder(recorded.messages)
        return await reply if inspect.isawaitable(reply) else reply

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

    def _next_failure(self, endpoint: Endpoint) -> _Failure | None:
        queue = self._failures[endpoint]
        return queue.popleft() if queue else None

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
