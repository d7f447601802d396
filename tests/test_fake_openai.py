"""Tests for the fake OpenAI server, driven by the real ``langchain_openai.ChatOpenAI`` client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.fakes.openai_server import FakeOpenAI, RecordedRequest

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
    with pytest.raises(RuntimeError):
        _ = fake.base_url
