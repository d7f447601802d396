"""``supportbot serve`` as a real process: graceful shutdown mid-turn, and logs that never hold a secret."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fleet import wait_up
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent
SID = "7f0c7d62-1d7b-4c4e-a1f1-1f8f4b5e2a10"


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, env: dict[str, str]) -> None:
        self.proc, self.url, self.env = proc, url, env


@pytest.fixture
async def served(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[Served]:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"memory:\n  store_url: sqlite:///{tmp_path / 'sessions.db'}\n"
        "server:\n  shutdown_grace: 20s\nlog:\n  format: json\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "SUPPORTBOT_"))}
    env.update(
        SUPPORTBOT_CONFIG=str(config),
        PORT=str(port),
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-live-DO-NOT-LOG-4242",
        SUPPORTBOT_WEB_TOKEN="web-token-DO-NOT-LOG-1717",
        # Only the reply calls the fake model, so a queued failure hits the turn it is meant for.
        SUPPORTBOT_MEMORY__ENTITIES="false",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_up(url, proc, http)
        yield Served(proc, url, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


AUTH = {"Authorization": "Bearer web-token-DO-NOT-LOG-1717"}


async def test_sigterm_lets_the_in_flight_turn_finish_and_store(served: Served, fake_openai: FakeOpenAI) -> None:
    fake_openai.delay = 2.0
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(
            http.post(f"{served.url}/api/chat", json={"session_id": SID, "message": "vpn drops"}, headers=AUTH)
        )
        while not fake_openai.requests:
            await asyncio.sleep(0.05)
        served.proc.send_signal(signal.SIGTERM)
        response = await request
        assert response.status == 200
        assert (await response.json())["reply"] == "echo: vpn drops"
    out, err = await asyncio.to_thread(served.proc.communicate, timeout=30)
    assert served.proc.returncode == 0, err
    shown = subprocess.run(
        [sys.executable, "-m", "bot", "sessions", "list"], env=served.env, capture_output=True, text=True, check=True
    )
    session_id = shown.stdout.split("\t")[0]
    assert session_id == f"web:-:{SID.replace('-', '%2D')}:-:{SID.replace('-', '%2D')}"
    transcript = subprocess.run(
        [sys.executable, "-m", "bot", "sessions", "show", session_id], env=served.env, capture_output=True, text=True
    ).stdout
    assert "user: vpn drops" in transcript and "assistant: echo: vpn drops" in transcript


async def test_logs_are_json_with_turn_context_and_never_hold_a_secret(served: Served, fake_openai: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        ok = await http.post(f"{served.url}/api/chat", json={"session_id": SID, "message": "hi"}, headers=AUTH)
        assert ok.status == 200
        fake_openai.fail_next("401")
        failed = await http.post(f"{served.url}/api/chat", json={"session_id": SID, "message": "again"}, headers=AUTH)
        assert (await failed.json())["kind"] == "fallback"
        denied = await http.post(f"{served.url}/api/chat", json={"session_id": SID, "message": "x"})
        assert denied.status == 401
    served.proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.to_thread(served.proc.communicate, timeout=30)
    for secret in ("sk-live-DO-NOT-LOG-4242", "web-token-DO-NOT-LOG-1717"):
        assert secret not in out and secret not in err
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    turns = [r for r in records if r["message"] == "turn done"]
    assert len(turns) == 2
    assert {"session_id", "platform", "event_id", "latency_ms", "kind"} <= set(turns[0])
    assert turns[0]["platform"] == "web" and turns[1]["kind"] == "fallback"
    assert any(r["level"] == "ERROR" and "model failed" in r["message"] for r in records)
