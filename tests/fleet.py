"""A fleet of real ``supportbot serve`` processes sharing one Redis, for multi-process tests and the soak."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.signature import SignatureVerifier

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.redis_server import free_port

SECRET = "multi-process-signing-secret"


def spawn(env: dict[str, str], port: int, logs: Path) -> subprocess.Popen[str]:
    # Logs go to a file: a pipe nobody reads fills up and blocks the process.
    with open(logs / f"serve-{port}.log", "a") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env={**env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )


class Fleet:
    def __init__(
        self,
        urls: list[str],
        procs: list[subprocess.Popen[str]],
        http: aiohttp.ClientSession,
        env: dict[str, str],
        logs: Path,
    ) -> None:
        self.urls, self.procs, self.http, self.env, self.logs = urls, procs, http, env, logs

    async def restart(self, index: int) -> None:
        """SIGTERM one process, wait for its graceful exit, start it again on the same port."""
        proc = self.procs[index]
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, timeout=60)
        port = int(self.urls[index].rsplit(":", 1)[1])
        assert proc.returncode == 0, (self.logs / f"serve-{port}.log").read_text()[-2000:]
        self.procs[index] = spawn(self.env, port, self.logs)
        await wait_up(self.urls[index], self.procs[index], self.http)

    def kill(self, index: int) -> None:
        """SIGKILL one process: nothing it holds is given back, no lease released."""
        self.procs[index].kill()
        self.procs[index].wait()

    async def respawn(self, index: int) -> None:
        """Start a stopped process again on its port (so under its consumer name), and wait until it is ready."""
        port = int(self.urls[index].rsplit(":", 1)[1])
        self.procs[index] = spawn(self.env, port, self.logs)
        await wait_up(self.urls[index], self.procs[index], self.http)

    def log(self, index: int) -> str:
        port = int(self.urls[index].rsplit(":", 1)[1])
        return (self.logs / f"serve-{port}.log").read_text()[-3000:]

    async def deliver(self, index: int, payload: dict[str, Any], *, retry: int | None = None) -> int:
        body = json.dumps(payload)
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body),
        }
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
        async with self.http.post(f"{self.urls[index]}/slack/events", data=body, headers=headers) as response:
            return response.status


async def wait_up(url: str, proc: subprocess.Popen[str], http: aiohttp.ClientSession) -> None:
    """Wait for ``/readyz``, however long imports take on a busy machine (a hang meets the per-test timeout)."""
    while True:
        assert proc.poll() is None, "a serve process exited early"
        try:
            async with http.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)


async def start_fleet(
    count: int, tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_openai: FakeOpenAI, **extra: str
) -> Fleet:
    """``count`` serve processes on free ports, ready; Slack and the model are the given fakes.

    ``redis_url`` names the store the processes share; a ``sqlite:///`` URL gives them the embedded store instead.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "SUPPORTBOT_", "SLACK_"))}
    store = {"SUPPORTBOT_MEMORY__STORE_URL": redis_url} if redis_url.startswith("sqlite") else {"REDIS_URL": redis_url}
    env.update(
        SUPPORTBOT_CONFIG=str(tmp_path / "absent.yaml"),
        **store,
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-test",
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_slack.api_url,
        SUPPORTBOT_LLM__MAX_RETRIES="0",
        SUPPORTBOT_RATE_LIMIT__MESSAGES="0",
        # One model call per message, so tests can count them; the memory layers have tests of their own.
        SUPPORTBOT_MEMORY__ENTITIES="false",
        SUPPORTBOT_MEMORY__SUMMARY="false",
        **extra,
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "absent.yaml").write_text("{}\n")
    ports = [free_port() for _ in range(count)]
    procs = [spawn(env, port, tmp_path) for port in ports]
    http = aiohttp.ClientSession()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(wait_up(url, proc, http) for url, proc in zip(urls, procs, strict=True)))
    except BaseException:
        await stop_fleet(Fleet(urls, procs, http, env, tmp_path))
        raise
    return Fleet(urls, procs, http, env, tmp_path)


async def stop_fleet(fleet: Fleet) -> None:
    await fleet.http.close()
    for proc in fleet.procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in fleet.procs:
        try:
            await asyncio.to_thread(proc.wait, timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
