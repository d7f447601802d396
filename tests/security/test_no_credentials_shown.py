"""No surface shows a credential: planted secrets (in OPENAI_BASE_URL's userinfo, REDIS_URL's userinfo and query,
the API key, the web token, the ticket webhook's URL and token) never appear on the start banner, in the logs at
DEBUG (httpx and openai turned up too), on /readyz, /api/info, /metrics, in exports, or in error messages; and
/readyz says what is down without saying where."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from langchain_core.messages import HumanMessage

from adapters.web import create_app
from bot.app import build_bot
from bot.config import load_settings
from bot.kb import KnowledgeBase
from bot.logs import configure_logging
from bot.model import build_chat_model
from bot.session import SessionKey
from tests.fakes.openai_server import FakeOpenAI
from tests.fleet import wait_up
from tests.redis_server import free_port
from tests.test_cli import supportbot

PLANTED = {
    "base_url_password": "PLANTED-openai-pass-7731",
    "api_key": "sk-PLANTED-key-0123456789abcdef",
    "redis_password": "PLANTED-redis-pass-4402",
    "redis_query_password": "PLANTED-redis-query-9917",
    "web_token": "PLANTED-web-token-5150",
    "webhook_token": "PLANTED-hook-token-6021",
    "webhook_url_secret": "PLANTED-hook-path-3388",
}
SID = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
AUTH = {"Authorization": f"Bearer {PLANTED['web_token']}"}


def leaks(text: str) -> list[str]:
    return [name for name, secret in PLANTED.items() if secret in text]


def environment(openai_base: str, **extra: str) -> dict[str, str]:
    host = openai_base.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "SUPPORTBOT_", "SLACK_"))}
    env.update(
        SUPPORTBOT_CONFIG="",
        OPENAI_BASE_URL=f"http://helpdesk:{PLANTED['base_url_password']}@{host}",
        OPENAI_API_KEY=PLANTED["api_key"],
        SUPPORTBOT_WEB_TOKEN=PLANTED["web_token"],
        SUPPORTBOT_TICKET_WEBHOOK_URL=f"http://127.0.0.1:9/hooks/{PLANTED['webhook_url_secret']}?token=x",
        SUPPORTBOT_TICKET_WEBHOOK_TOKEN=PLANTED["webhook_token"],
        SUPPORTBOT_MEMORY__EMBEDDINGS="hashing",
        SUPPORTBOT_LLM__MAX_RETRIES="0",
        SUPPORTBOT_LOG__LEVEL="DEBUG",
        **extra,
    )
    return env


def down_redis_url() -> str:
    return (
        f"redis://sb:{PLANTED['redis_password']}@127.0.0.1:{free_port()}/0"
        f"?password={PLANTED['redis_query_password']}&socket_timeout=1"
    )


async def test_readyz_info_metrics_and_errors_with_the_store_down(fake_openai: FakeOpenAI) -> None:
    redis_url = down_redis_url()
    port = redis_url.split("@127.0.0.1:", 1)[1].split("/", 1)[0]
    settings = load_settings("/dev/null", env={**environment(fake_openai.base_url), "REDIS_URL": redis_url})
    bot = build_bot(settings)
    async with TestClient(TestServer(create_app(bot, settings))) as client:
        ready = await client.get("/readyz")
        body = await ready.text()
        assert ready.status == 503 and "redis" in body and "unreachable" in body
        assert port not in body and "127.0.0.1" not in body, "/readyz says what is down, not where"
        info = await (await client.get("/api/info", headers=AUTH)).json()
        assert info["model"] == settings.llm.model and info["store"] == "redis", "the page names the model only"
        chat = await client.post("/api/chat", json={"session_id": SID, "message": "vpn down"}, headers=AUTH)
        metrics = await (await client.get("/metrics")).text()
        shown = [body, str(info), await chat.text(), metrics]
    await bot.aclose()
    await bot.store.aclose()
    assert [leaks(text) for text in shown] == [[], [], [], []]
    assert all(fake_openai.base_url.removeprefix("http://").split("/")[0] not in text for text in shown[:2])


async def test_cli_errors_and_exports_hold_no_secret(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    async def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(supportbot, env, *args, stdin=stdin)

    down = environment(fake_openai.base_url, REDIS_URL=down_redis_url())
    failed = await run(down, "sessions", "list")
    assert failed.returncode == 1 and "unavailable" in failed.stderr
    assert leaks(failed.stdout + failed.stderr) == []
    sqlite = environment(fake_openai.base_url, SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db")
    chat = await run(sqlite, "chat", "--session", "s1", stdin="my password is Tr0ub4dor&3\n")
    assert chat.returncode == 0, chat.stderr
    session_id = SessionKey("cli", None, "s1", None, getpass.getuser()).id
    exported = await run(sqlite, "sessions", "export", session_id)
    assert exported.returncode == 0 and "Tr0ub4dor&3" not in exported.stdout
    assert leaks(chat.stdout + chat.stderr + exported.stdout + exported.stderr) == []


@pytest.fixture
def debug_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "openai")}
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_library_logs_at_debug_hold_no_secret(
    fake_openai: FakeOpenAI, capsys: pytest.CaptureFixture[str], debug_logging: None, fmt: str
) -> None:
    settings = load_settings("/dev/null", env={**environment(fake_openai.base_url), "REDIS_URL": down_redis_url()})
    configure_logging(level="DEBUG", fmt=fmt, secrets=settings.secret_values())
    for name in ("httpx", "httpcore", "openai"):  # an operator turning the libraries up, as the issue did
        logging.getLogger(name).setLevel(logging.DEBUG)
    model = build_chat_model(settings, KnowledgeBase([]))
    await model.model.ainvoke([HumanMessage("hello")])
    logging.getLogger("supportbot.test").error("store %s failed", settings.store_url)
    await model.aclose()
    err = capsys.readouterr().err
    assert "HTTP Request: POST" in err, "httpx logged the call"
    assert leaks(err) == []


async def test_banner_logs_and_endpoints_of_a_running_server(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    port = free_port()
    env = environment(
        fake_openai.base_url,
        PORT=str(port),
        SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path}/s.db",
        SUPPORTBOT_LOG__FORMAT="json",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    seen: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            await wait_up(url, proc, http)
            for path, headers in (("/readyz", {}), ("/api/info", AUTH), ("/metrics", {}), ("/api/nope", AUTH)):
                async with http.get(url + path, headers=headers) as response:
                    seen.append(await response.text())
            async with http.post(
                f"{url}/api/chat", json={"session_id": SID, "message": "printer offline"}, headers=AUTH
            ) as response:
                assert response.status == 200
                seen.append(await response.text())
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "model: gpt-4o-mini at http://***@127.0.0.1" in out, out
    assert fake_openai.requests, "the model was called"
    assert leaks(out) == [] and leaks(err) == [] and [leaks(text) for text in seen] == [[]] * len(seen)
