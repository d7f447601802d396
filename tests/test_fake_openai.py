"""Tests for the fake OpenAI server, driven by the real ``langchain_openai.ChatOpenAI`` client."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import SecretStr

from tests.fakes.openai_server import (
    FakeOpenAI,
    RecordedRequest,
    ToolCallReply,
    fake_embedding,
    last_tool_results,
)

REPLY = "The printer on floor 3 is back online; please retry your print job."


def fixed_reply(messages: list[dict[str, Any]]) -> str:
    """Responder returning a fixed reply regardless of the conversation."""
    return REPLY


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(responder=fixed_reply, chunk_size=8) as server:
        yield server


@pytest.fixture
async def http_client() -> AsyncIterator[openai.DefaultAsyncHttpxClient]:
    client = openai.DefaultAsyncHttpxClient()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_llm(
    fake: FakeOpenAI,
    http_client: openai.DefaultAsyncHttpxClient,
    *,
    timeout: float = 5.0,
    max_retries: int = 0,
    **kwargs: Any,
) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-test",
        api_key=SecretStr("sk-test"),
        base_url=fake.base_url,
        max_retries=max_retries,
        timeout=timeout,
        http_async_client=http_client,
        **kwargs,
    )


CONVERSATION = [
    SystemMessage(content="You are the IT helpdesk bot."),
    HumanMessage(content="My printer is offline."),
]
EXPECTED_MESSAGES = [
    {"role": "system", "content": "You are the IT helpdesk bot."},
    {"role": "user", "content": "My printer is offline."},
]


async def test_ainvoke_returns_responder_text_and_records_messages(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    result = await make_llm(fake, http_client).ainvoke(CONVERSATION)

    assert result.content == REPLY
    assert len(fake.requests) == 1
    recorded = fake.requests[0]
    assert recorded.messages == EXPECTED_MESSAGES
    assert recorded.body["model"] == "gpt-test"
    assert recorded.stream is False
    assert recorded.headers["authorization"] == "Bearer sk-test"
    assert recorded.prompt_text() == "You are the IT helpdesk bot.\nMy printer is offline."
    assert result.response_metadata["model_name"] == "gpt-test"
    assert result.response_metadata["finish_reason"] == "stop"
    assert result.usage_metadata is not None
    assert result.usage_metadata["output_tokens"] == len(REPLY) // 4 + 1


async def test_an_async_responder_holds_its_answer_until_it_returns(
    http_client: openai.DefaultAsyncHttpxClient,
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(messages: list[dict[str, Any]]) -> str:
        arrived.set()
        await release.wait()
        return "released"

    async with FakeOpenAI(responder=held) as fake:
        call = asyncio.create_task(make_llm(fake, http_client).ainvoke(CONVERSATION))
        await arrived.wait()
        assert not call.done() and len(fake.requests) == 1
        release.set()
        assert (await call).content == "released"


async def test_default_responder_echoes_last_user_message(http_client: openai.DefaultAsyncHttpxClient) -> None:
    async with FakeOpenAI() as fake:
        result = await make_llm(fake, http_client).ainvoke(CONVERSATION)
    assert result.content == "echo: My printer is offline."


async def test_astream_yields_ordered_chunks_joining_to_full_text(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    pieces = [chunk.content async for chunk in make_llm(fake, http_client).astream(CONVERSATION)]

    text_pieces = [p for p in pieces if p]
    assert "".join(str(p) for p in text_pieces) == REPLY
    assert text_pieces == [REPLY[i : i + 8] for i in range(0, len(REPLY), 8)]
    assert fake.requests[0].stream is True
    assert fake.requests[0].messages == EXPECTED_MESSAGES


async def test_astream_reports_usage_when_requested(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    llm = make_llm(fake, http_client, stream_usage=True)
    merged: AIMessageChunk | None = None
    async for chunk in llm.astream(CONVERSATION):
        merged = chunk if merged is None else merged + chunk

    assert merged is not None
    assert merged.content == REPLY
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == len(REPLY) // 4 + 1
    assert merged.usage_metadata["total_tokens"] == (
        merged.usage_metadata["input_tokens"] + merged.usage_metadata["output_tokens"]
    )


async def test_list_content_parts_are_handled(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient) -> None:
    message = HumanMessage(content=[{"type": "text", "text": "first"}, {"type": "text", "text": "second"}])
    await make_llm(fake, http_client).ainvoke([message])
    assert fake.requests[0].prompt_text() == "first\nsecond"


async def test_rate_limit_raises_rate_limit_error(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    fake.fail_next("429", retry_after=3)
    with pytest.raises(openai.RateLimitError) as excinfo:
        await make_llm(fake, http_client).ainvoke(CONVERSATION)

    assert excinfo.value.status_code == 429
    assert excinfo.value.response.headers["retry-after"] == "3"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert excinfo.value.type == "rate_limit_exceeded"
    assert len(fake.requests) == 1


async def test_server_error_raises_internal_server_error(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    fake.fail_next("500")
    with pytest.raises(openai.InternalServerError):
        await make_llm(fake, http_client).ainvoke(CONVERSATION)
    assert len(fake.requests) == 1


async def test_unauthorized_raises_authentication_error(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    fake.fail_next("401")
    with pytest.raises(openai.AuthenticationError) as excinfo:
        await make_llm(fake, http_client).ainvoke(CONVERSATION)
    assert excinfo.value.code == "invalid_api_key"


async def test_hang_raises_timeout(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient) -> None:
    fake.fail_next("hang")
    with pytest.raises(openai.APITimeoutError):
        await make_llm(fake, http_client, timeout=0.5).ainvoke(CONVERSATION)
    assert len(fake.requests) == 1


async def test_aclose_does_not_hang_on_a_hanging_request(session: aiohttp.ClientSession) -> None:
    fake = FakeOpenAI()
    base_url = await fake.start()
    fake.fail_next("hang")
    pending = asyncio.create_task(session.post(f"{base_url}/chat/completions", json={"model": "m", "messages": []}))
    while not fake.requests:
        await asyncio.sleep(0.01)

    await asyncio.wait_for(fake.aclose(), timeout=5)
    await asyncio.wait_for(fake.aclose(), timeout=5)

    response = await asyncio.wait_for(pending, timeout=5)
    response.release()
    assert response.status == 503


async def test_break_stream_raises_during_astream(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    fake.fail_next("break_stream")
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in make_llm(fake, http_client).astream(CONVERSATION):
            received.append(str(chunk.content))
    assert "".join(received) == REPLY[:8]


async def test_break_non_stream_raises_connection_error(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    fake.fail_next("break_stream")
    with pytest.raises(openai.APIConnectionError):
        await make_llm(fake, http_client).ainvoke(CONVERSATION)


async def test_bad_json_raises(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient) -> None:
    fake.fail_next("bad_json")
    with pytest.raises(ValueError):
        await make_llm(fake, http_client).ainvoke(CONVERSATION)


async def test_retry_after_server_error_succeeds(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient) -> None:
    fake.fail_next("500", times=1)
    result = await make_llm(fake, http_client, max_retries=1).ainvoke(CONVERSATION)

    assert result.content == REPLY
    assert len(fake.requests) == 2
    assert fake.requests[0].messages == fake.requests[1].messages == EXPECTED_MESSAGES
    assert fake.pending_failures() == 0


async def test_failures_are_consumed_in_order(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient) -> None:
    fake.fail_next("429", times=2, retry_after=0.01)
    llm = make_llm(fake, http_client)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            await llm.ainvoke(CONVERSATION)
    assert (await llm.ainvoke(CONVERSATION)).content == REPLY
    assert len(fake.requests) == 3


async def test_delay_is_applied(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient) -> None:
    fake.delay = 0.3
    loop = asyncio.get_running_loop()
    started = loop.time()
    await make_llm(fake, http_client).ainvoke(CONVERSATION)
    assert loop.time() - started >= 0.3


async def test_json_content_type_and_models_and_not_found(fake: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    async with session.post(
        f"{fake.base_url}/chat/completions",
        json={"model": "other-model", "messages": [{"role": "user", "content": "x"}]},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "other-model"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": REPLY, "refusal": None}
    assert body["usage"]["completion_tokens"] == len(REPLY) // 4 + 1

    async with session.get(f"{fake.base_url}/models") as response:
        assert response.headers["Content-Type"] == "application/json"
        models = await response.json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["gpt-test"]

    async with session.get(f"{fake.base_url}/nope") as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"
        assert "error" in await response.json()

    fake.fail_next("500")
    async with session.post(f"{fake.base_url}/chat/completions", json={"messages": []}) as response:
        assert response.status == 500
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["error"]["type"] == "server_error"


async def test_raw_stream_format(fake: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    payload = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with session.post(f"{fake.base_url}/chat/completions", json=payload) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = (await response.read()).decode()

    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(REPLY) // 4 + 1


def test_recorded_request_helpers() -> None:
    recorded = RecordedRequest(
        body={
            "stream": True,
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]},
            ],
        },
        headers={},
    )
    assert recorded.stream is True
    assert len(recorded.messages) == 3
    assert recorded.prompt_text() == "sys\na"


def test_fail_next_validates_arguments() -> None:
    fake = FakeOpenAI()
    with pytest.raises(ValueError):
        fake.fail_next("418")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fake.fail_next("500", times=0)
    with pytest.raises(ValueError):
        fake.fail_next("500", endpoint="images")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        _ = fake.base_url


TICKET_ARGS = {"title": "Printer offline on floor 3", "priority": "high"}
CREATE_TICKET = {
    "type": "function",
    "function": {
        "name": "create_ticket",
        "description": "Files a helpdesk ticket.",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "priority": {"type": "string"}},
            "required": ["title"],
        },
    },
}
LOOKUP_USER = {
    "type": "function",
    "function": {
        "name": "lookup_user",
        "description": "Finds a user in the directory.",
        "parameters": {"type": "object", "properties": {"user": {"type": "string"}}},
    },
}


def ticket_responder(messages: list[dict[str, Any]]) -> str | ToolCallReply:
    """Responder that files a ticket first, then confirms once the tool result is back."""
    results = last_tool_results(messages)
    if not results:
        return ToolCallReply([("create_ticket", TICKET_ARGS)])
    return f"Filed it as {results[0]['content']}."


def two_tools_responder(messages: list[dict[str, Any]]) -> ToolCallReply:
    """Responder that always calls two tools at once, with some text first."""
    return ToolCallReply([("lookup_user", {"user": "U1"}), ("create_ticket", TICKET_ARGS)], content="One moment.")


async def stream_chunks(llm: Runnable[Any, Any], messages: list[BaseMessage]) -> list[AIMessageChunk]:
    chunks: list[AIMessageChunk] = []
    async for chunk in llm.astream(messages):
        assert isinstance(chunk, AIMessageChunk)
        chunks.append(chunk)
    return chunks


def merge_chunks(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return merged


async def test_tool_call_round_trip_with_ainvoke(http_client: openai.DefaultAsyncHttpxClient) -> None:
    async with FakeOpenAI(responder=ticket_responder) as fake:
        llm = make_llm(fake, http_client).bind_tools([CREATE_TICKET, LOOKUP_USER])
        first = await llm.ainvoke(CONVERSATION)

        assert isinstance(first, AIMessage)
        assert first.content == ""
        assert first.response_metadata["finish_reason"] == "tool_calls"
        [call] = first.tool_calls
        assert call["name"] == "create_ticket"
        assert call["args"] == TICKET_ARGS
        assert call["id"] is not None and call["id"].startswith("call_")
        assert fake.requests[0].tools == ["create_ticket", "lookup_user"]
        assert fake.requests[0].tool_choice is None

        conversation: list[BaseMessage] = [*CONVERSATION, first, ToolMessage("TCK-42", tool_call_id=call["id"])]
        second = await llm.ainvoke(conversation)

    assert second.content == "Filed it as TCK-42."
    assert second.response_metadata["finish_reason"] == "stop"
    assistant, tool_result = fake.requests[1].messages[-2:]
    assert assistant["role"] == "assistant"
    assert assistant["content"] is None
    assert assistant["tool_calls"] == [
        {
            "type": "function",
            "id": call["id"],
            "function": {"name": "create_ticket", "arguments": json.dumps(TICKET_ARGS)},
        }
    ]
    assert tool_result == {"role": "tool", "content": "TCK-42", "tool_call_id": call["id"]}
    assert fake.requests[1].prompt_text().endswith("My printer is offline.\nTCK-42")


async def test_tool_call_round_trip_with_astream(http_client: openai.DefaultAsyncHttpxClient) -> None:
    async with FakeOpenAI(responder=ticket_responder, chunk_size=8) as fake:
        llm = make_llm(fake, http_client, stream_usage=True).bind_tools([CREATE_TICKET])
        chunks = await stream_chunks(llm, CONVERSATION)
        merged = merge_chunks(chunks)

        [call] = merged.tool_calls
        assert call["name"] == "create_ticket"
        assert call["args"] == TICKET_ARGS
        assert call["id"] is not None and call["id"].startswith("call_")
        argument_pieces = [c["args"] for chunk in chunks for c in chunk.tool_call_chunks if c["args"]]
        assert len(argument_pieces) > 1
        assert "".join(argument_pieces) == json.dumps(TICKET_ARGS)
        assert merged.response_metadata["finish_reason"] == "tool_calls"
        assert merged.usage_metadata is not None

        conversation: list[BaseMessage] = [*CONVERSATION, merged, ToolMessage("TCK-7", tool_call_id=call["id"])]
        reply = merge_chunks(await stream_chunks(llm, conversation))

    assert reply.content == "Filed it as TCK-7."
    assert reply.tool_calls == []
    assert fake.requests[1].messages[-1] == {"role": "tool", "content": "TCK-7", "tool_call_id": call["id"]}


async def test_parallel_tool_calls_with_text(http_client: openai.DefaultAsyncHttpxClient) -> None:
    async with FakeOpenAI(responder=two_tools_responder) as fake:
        llm = make_llm(fake, http_client).bind_tools([CREATE_TICKET, LOOKUP_USER], tool_choice="create_ticket")
        invoked = await llm.ainvoke(CONVERSATION)
        streamed = merge_chunks(await stream_chunks(llm, CONVERSATION))

    for message in (invoked, streamed):
        assert message.content == "One moment."
        assert [(c["name"], c["args"]) for c in message.tool_calls] == [
            ("lookup_user", {"user": "U1"}),
            ("create_ticket", TICKET_ARGS),
        ]
        assert len({c["id"] for c in message.tool_calls}) == 2
    assert fake.requests[0].tool_choice == {"type": "function", "function": {"name": "create_ticket"}}


async def test_raw_tool_call_formats(session: aiohttp.ClientSession) -> None:
    payload: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [CREATE_TICKET],
    }
    async with FakeOpenAI(responder=ticket_responder, chunk_size=8) as fake:
        async with session.post(f"{fake.base_url}/chat/completions", json=payload) as response:
            body = await response.json()
        stream_payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        async with session.post(f"{fake.base_url}/chat/completions", json=stream_payload) as response:
            raw = (await response.read()).decode()

    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"] == {"name": "create_ticket", "arguments": json.dumps(TICKET_ARGS)}

    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    head = deltas[0]
    assert head["role"] == "assistant"
    assert head["content"] is None
    [head_call] = head["tool_calls"]
    assert head_call["index"] == 0
    assert head_call["id"].startswith("call_")
    assert head_call["type"] == "function"
    assert head_call["function"] == {"name": "create_ticket", "arguments": ""}
    pieces = []
    for delta in deltas[1:]:
        assert delta.keys() == {"tool_calls"}
        [piece] = delta["tool_calls"]
        assert piece.keys() == {"index", "function"}
        assert piece["index"] == 0
        pieces.append(piece["function"]["arguments"])
    assert pieces == [json.dumps(TICKET_ARGS)[i : i + 8] for i in range(0, len(json.dumps(TICKET_ARGS)), 8)]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_last_tool_results() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "create_ticket", "arguments": "{}"}}
    asked: list[dict[str, Any]] = [
        {"role": "user", "content": "printer"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    answered = [*asked, {"role": "tool", "tool_call_id": "call_1", "content": "TCK-1"}]
    followed_up = [*answered, {"role": "assistant", "content": "Filed."}, {"role": "user", "content": "thanks"}]

    assert last_tool_results([{"role": "user", "content": "printer"}]) == []
    assert last_tool_results(asked) == []
    assert last_tool_results(answered) == [answered[-1]]
    assert last_tool_results(followed_up) == []


def test_tool_call_reply_and_request_tool_helpers() -> None:
    with pytest.raises(ValueError):
        ToolCallReply([])
    recorded = RecordedRequest(
        body={
            "tools": [CREATE_TICKET, {"type": "function"}, "junk", LOOKUP_USER],
            "tool_choice": "required",
            "messages": [{"role": "tool", "tool_call_id": "call_1", "content": None}],
        },
        headers={},
    )
    assert recorded.tools == ["create_ticket", "lookup_user"]
    assert recorded.tool_choice == "required"
    assert recorded.prompt_text() == ""
    assert RecordedRequest(body={}, headers={}).tools == []


def make_embeddings(fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient, **kwargs: Any) -> OpenAIEmbeddings:
    # Without check_embedding_ctx_length=False the client tokenizes with tiktoken, which downloads encodings.
    return OpenAIEmbeddings(
        model="text-embedding-3-small",
        api_key=SecretStr("sk-test"),
        base_url=fake.base_url,
        check_embedding_ctx_length=False,
        max_retries=0,
        http_async_client=http_client,
        **kwargs,
    )


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


async def test_openai_embeddings_match_fake_embedding(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    embeddings = make_embeddings(fake, http_client)
    query = await embeddings.aembed_query("My printer is offline")
    documents = await embeddings.aembed_documents(["Printer offline on floor 3", "VPN password reset"])

    assert query == pytest.approx(fake_embedding("My printer is offline", 64), abs=1e-6)
    assert len(documents) == 2
    for vector, text in zip(documents, ["Printer offline on floor 3", "VPN password reset"], strict=True):
        assert vector == pytest.approx(fake_embedding(text, 64), abs=1e-6)
    assert fake.embedding_requests == [["My printer is offline"], ["Printer offline on floor 3", "VPN password reset"]]
    assert fake.requests == []


async def test_openai_embeddings_honour_dimensions(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    vector = await make_embeddings(fake, http_client, dimensions=16).aembed_query("reset my password")
    assert vector == pytest.approx(fake_embedding("reset my password", 16), abs=1e-6)


async def test_embedding_failures_have_their_own_queue(
    fake: FakeOpenAI, http_client: openai.DefaultAsyncHttpxClient
) -> None:
    fake.fail_next("401")
    fake.fail_next("500", endpoint="embeddings")
    embeddings = make_embeddings(fake, http_client)
    with pytest.raises(openai.InternalServerError):
        await embeddings.aembed_query("printer")
    assert await embeddings.aembed_query("printer") == pytest.approx(fake_embedding("printer", 64), abs=1e-6)
    assert fake.pending_failures("embeddings") == 0
    assert fake.pending_failures() == 1
    with pytest.raises(openai.AuthenticationError):
        await make_llm(fake, http_client).ainvoke(CONVERSATION)
    assert fake.embedding_requests == [["printer"], ["printer"]]


@pytest.mark.parametrize(
    ("raw_input", "recorded", "prompt_tokens"),
    [
        ("printer jam", ["printer jam"], 3),
        (["printer jam", "vpn"], ["printer jam", "vpn"], 4),
        ([1, 2, 3], [[1, 2, 3]], 3),
        ([[1, 2], [3]], [[1, 2], [3]], 3),
    ],
)
async def test_raw_embeddings_accept_every_input_shape(
    fake: FakeOpenAI,
    session: aiohttp.ClientSession,
    raw_input: Any,
    recorded: list[Any],
    prompt_tokens: int,
) -> None:
    payload = {"model": "text-embedding-3-small", "input": raw_input, "encoding_format": "float"}
    async with session.post(f"{fake.base_url}/embeddings", json=payload) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        body = await response.json()

    assert body["object"] == "list"
    assert body["model"] == "text-embedding-3-small"
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    assert [item["index"] for item in body["data"]] == list(range(len(recorded)))
    assert all(item["object"] == "embedding" for item in body["data"])
    assert all(len(item["embedding"]) == 64 for item in body["data"])
    assert fake.embedding_requests == [recorded]
    if isinstance(recorded[0], list):
        assert body["data"][0]["embedding"] == fake_embedding(" ".join(map(str, recorded[0])), 64)
    else:
        assert body["data"][0]["embedding"] == fake_embedding(recorded[0], 64)


async def test_raw_embeddings_base64_is_little_endian_float32(fake: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    payload = {"model": "m", "input": "printer jam", "encoding_format": "base64", "dimensions": 8}
    async with session.post(f"{fake.base_url}/embeddings", json=payload) as response:
        body = await response.json()

    encoded = body["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<8f", base64.b64decode(encoded)))
    assert decoded == pytest.approx(fake_embedding("printer jam", 8), abs=1e-6)


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "input": ""},
        {"model": "m", "input": []},
        {"model": "m", "input": ["ok", 1]},
        {"model": "m", "input": [[1], []]},
        {"model": "m", "input": [True]},
        {"model": "m"},
        {"model": "m", "input": "x", "dimensions": 0},
        {"model": "m", "input": "x", "encoding_format": "hex"},
        ["not", "an", "object"],
    ],
)
async def test_raw_embeddings_reject_invalid_requests(
    fake: FakeOpenAI, session: aiohttp.ClientSession, payload: Any
) -> None:
    async with session.post(f"{fake.base_url}/embeddings", json=payload) as response:
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "invalid_request_error"
    assert fake.embedding_requests == []


def test_fake_embedding_properties() -> None:
    printer = fake_embedding("The printer is offline", 64)

    assert printer == fake_embedding("the PRINTER is offline!", 64)
    assert math.hypot(*printer) == pytest.approx(1.0)
    assert cosine(printer, fake_embedding("printer offline again", 64)) > 0
    assert cosine(printer, fake_embedding("The printer is offline", 64)) == pytest.approx(1.0)
    assert len(fake_embedding("x", 3)) == 3
    assert math.hypot(*fake_embedding("?!", 8)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fake_embedding("x", 0)
    with pytest.raises(ValueError):
        FakeOpenAI(embedding_dims=0)
