"""The HTTP API through aiohttp's test client: the chat route, streaming, history, health, and every bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.web import create_app
from bot.app import build_bot
from bot.memory.memory import MemoryStore
from bot.messages import IncomingMessage
from tests.fakes.models import RecordingModel
from tests.helpers import make_bot, settings_for

SID = "0b6a1f3e-7a55-4a57-9b0e-2f4a3c9d8e11"
OTHER = "5d1c2b3a-0000-4000-8000-123456789abc"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    settings = settings_for(SUPPORTBOT_WEB__MAX_BODY_BYTES="2048", SUPPORTBOT_MEMORY__STORE_URL="memory://")
    bot = build_bot(settings)
    async with TestClient(TestServer(create_app(bot, settings))) as test_client:
        yield test_client
    await bot.aclose()


async def chat(client: TestClient, message: str, session_id: str = SID, **extra: str) -> dict[str, object]:
    response = await client.post("/api/chat", json={"session_id": session_id, "message": message, **extra})
    assert response.status == 200, await response.text()
    body: dict[str, object] = await response.json()
    return body


async def test_two_sessions_hold_two_conversations(client: TestClient) -> None:
    await chat(client, "My VPN is not working")
    await chat(client, "I cannot access email", session_id=OTHER)
    mine = await chat(client, "What issue did I report?")
    theirs = await chat(client, "What issue did I report?", session_id=OTHER)
    assert mine["session_id"] == SID and "My VPN is not working" in str(mine["reply"])
    assert "VPN" not in str(theirs["reply"]) and "I cannot access email" in str(theirs["reply"])
    history = await (await client.get(f"/api/sessions/{SID}/history")).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant", "user", "assistant"]
    assert history["messages"][0]["content"] == "My VPN is not working"


async def test_streaming_sends_chunks_then_done(client: TestClient) -> None:
    response = await client.post(
        "/api/chat",
        json={"session_id": SID, "message": "printer is offline"},
        headers={"Accept": "text/event-stream"},
    )
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = [block for block in (await response.text()).split("\n\n") if block]
    kinds = [block.split("\n")[0].removeprefix("event: ") for block in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"chunk"} and len(kinds) > 3
    chunks = "".join(json.loads(b.split("\n")[1].removeprefix("data: "))["text"] for b in events[:-1])
    done = json.loads(events[-1].split("\n")[1].removeprefix("data: "))
    assert chunks == done["reply"] and "Printer" in chunks


async def test_a_retried_message_id_gets_the_same_answer_once(client: TestClient) -> None:
    first = await chat(client, "my laptop is slow", message_id="m-1")
    again = await chat(client, "my laptop is slow", message_id="m-1")
    assert again["reply"] == first["reply"] and again["kind"] == "duplicate"
    history = await (await client.get(f"/api/sessions/{SID}/history")).json()
    assert len(history["messages"]) == 2


async def test_web_sessions_cannot_reach_other_platforms() -> None:
    store = MemoryStore()
    settings = settings_for()
    model = RecordingModel()
    bot = make_bot(store, model)
    slack = IncomingMessage("slack", "T1", SID, None, SID, "slack secret", "e1", is_direct=True)
    await bot.handle(slack)
    async with TestClient(TestServer(create_app(bot, settings))) as client:
        history = await (await client.get(f"/api/sessions/{SID}/history")).json()
        assert history["messages"] == []
        await chat(client, "hello")
    assert "slack secret" not in [m.text for m in model.prompts[-1]]
    await bot.aclose()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"not json", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"message": "hi"}', "application/json", 400, "session_id must be a string"),
        (b'{"session_id": 5, "message": "hi"}', "application/json", 400, "session_id must be a string"),
        (b'{"session_id": "short", "message": "hi"}', "application/json", 400, "session_id must be 8-64"),
        (b'{"session_id": "../../etc/passwd", "message": "hi"}', "application/json", 400, "session_id must be 8-64"),
        (b'{"session_id": "slack:T1:C1:-:U1", "message": "hi"}', "application/json", 400, "session_id must be 8-64"),
        (json.dumps({"session_id": SID}).encode(), "application/json", 400, "message must be a string"),
        (
            json.dumps({"session_id": SID, "message": ["x"]}).encode(),
            "application/json",
            400,
            "message must be a string",
        ),
        (json.dumps({"session_id": SID, "message": "   "}).encode(), "application/json", 400, "must not be empty"),
        (
            json.dumps({"session_id": SID, "message": "hi", "message_id": "a b"}).encode(),
            "application/json",
            400,
            "message_id",
        ),
        (
            json.dumps({"session_id": SID, "message": "hi"}).encode(),
            "text/plain",
            415,
            "Content-Type: application/json",
        ),
        (b"[" * 100_000, "application/json", 413, "larger than 2048 bytes"),
        (json.dumps({"session_id": SID, "message": "x" * 5_000}).encode(), "application/json", 413, "larger than"),
        (b"[" * 1_500, "application/json", 400, "not valid JSON"),
    ],
)
async def test_bad_input_gets_a_json_4xx_with_a_reason(
    client: TestClient, body: bytes, content_type: str, status: int, reason: str
) -> None:
    response = await client.post("/api/chat", data=body, headers={"Content-Type": content_type})
    assert response.status == status
    assert reason in (await response.json())["error"]
    history = await (await client.get(f"/api/sessions/{SID}/history")).json()
    assert history["messages"] == [], "nothing was stored"


async def test_unknown_routes_and_methods_are_json(client: TestClient) -> None:
    missing = await client.get("/api/nope")
    assert missing.status == 404 and "error" in await missing.json()
    wrong = await client.get("/api/chat")
    assert wrong.status == 405 and "error" in await wrong.json()
    bad_history = await client.get("/api/sessions/x/history")
    assert bad_history.status == 400


async def test_health_readiness_metrics_page_and_info(client: TestClient) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["model"].startswith("offline")
    await chat(client, "wifi keeps dropping")
    metrics = await (await client.get("/metrics")).text()
    assert 'supportbot_turns_total{kind="answer",platform="web"} 1.0' in metrics
    for name in (
        "supportbot_turn_seconds",
        "supportbot_model_seconds",
        "supportbot_store_seconds",
        "supportbot_active_sessions",
        "supportbot_lock_wait_seconds",
        "supportbot_duplicate_deliveries",
    ):
        assert name in metrics  # fmt: skip
    page = await client.get("/")
    assert page.status == 200 and "New conversation" in await page.text()
    info = await (await client.get("/api/info")).json()
    assert info["store"] == "memory" and "offline" in info["model"]


async def test_readyz_reports_a_store_that_is_down(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.redis_server import free_port

    settings = settings_for(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    bot = build_bot(settings)
    async with TestClient(TestServer(create_app(bot, settings))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 503 and "store" in (await ready.json())["reason"]
        assert (await client.get("/healthz")).status == 200
        reply = await chat(client, "vpn down")
        assert reply["kind"] == "notice" and "temporarily unavailable" in str(reply["reply"])
    await bot.aclose()
    await bot.store.aclose()


async def test_bearer_token_and_cors() -> None:
    settings = settings_for(
        SUPPORTBOT_WEB_TOKEN="s3cret-token", SUPPORTBOT_WEB__CORS_ORIGINS='["https://intranet.test"]'
    )
    bot = build_bot(settings, store=MemoryStore())
    async with TestClient(TestServer(create_app(bot, settings))) as client:
        body = {"session_id": SID, "message": "hi"}
        assert (await client.post("/api/chat", json=body)).status == 401
        wrong = await client.post("/api/chat", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        ok = await client.post("/api/chat", json=body, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status == 200
        assert (await client.get("/healthz")).status == 200, "operations endpoints need no token"
        preflight = await client.options(
            "/api/chat", headers={"Origin": "https://intranet.test", "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == "https://intranet.test"
        foreign = await client.post(
            "/api/chat", json=body, headers={"Origin": "https://evil.test", "Authorization": "Bearer s3cret-token"}
        )
        assert "Access-Control-Allow-Origin" not in foreign.headers
    await bot.aclose()
