"""The ``supportbot`` command, run as a user would: a real process, piped stdin, the embedded store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"memory:\n  store_url: sqlite:///{tmp_path / 'sessions.db'}\nkb:\n  path: {REPO / 'kb'}\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "SUPPORTBOT_"))}
    return {**clean, "SUPPORTBOT_CONFIG": str(config)}


def supportbot(
    env: dict[str, str], *args: str, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, cwd=cwd
    )


def test_piped_chat_remembers_per_session_and_exits_on_eof(env: dict[str, str]) -> None:
    chat = supportbot(env, "chat", "--session", "A", stdin="My VPN is not working\nWhat issue did I report?\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("bot> ") == 2
    second = chat.stdout.split("bot> ")[2]
    assert "“My VPN is not working”" in second
    other = supportbot(env, "chat", "--session", "B", stdin="What issue did I report?\n")
    assert "VPN is not working" not in other.stdout and "no earlier messages" in other.stdout


def test_chat_commands_switch_reset_and_show_history(env: dict[str, str]) -> None:
    script = (
        "printer jammed\n/history\n/session other\n/history\n/session A\n/reset\n/history\n/help\n/quit\nnever sent\n"
    )
    chat = supportbot(env, "chat", "--session", "A", stdin=script)
    assert chat.returncode == 0, chat.stderr
    out = chat.stdout
    assert "user: printer jammed" in out
    assert "switched to session 'other'" in out
    assert out.count("(no messages yet)") == 2, "the other session is empty, and A is empty after /reset"
    assert "/session NAME" in out and "never sent" not in out


def test_sessions_list_show_export_delete(env: dict[str, str]) -> None:
    supportbot(env, "chat", "--session", "laptop", stdin="my laptop is slow\n")
    listing = supportbot(env, "sessions", "list")
    assert listing.returncode == 0
    session_id = listing.stdout.split("\t")[0]
    assert session_id.startswith("cli:-:laptop:-:")
    shown = supportbot(env, "sessions", "show", session_id)
    assert "user: my laptop is slow" in shown.stdout and "1 turns" in shown.stdout
    exported = json.loads(supportbot(env, "sessions", "export", session_id).stdout)
    assert exported["session_id"] == session_id
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert supportbot(env, "sessions", "delete", session_id).returncode == 0
    assert supportbot(env, "sessions", "list").stdout.strip() == "no sessions"
    missing = supportbot(env, "sessions", "show", session_id)
    assert missing.returncode == 1 and "no session" in missing.stderr


def test_a_bad_session_id_is_a_clear_error(env: dict[str, str]) -> None:
    result = supportbot(env, "sessions", "show", "not-an-id")
    assert result.returncode == 2
    assert result.stderr.startswith("supportbot: not a session id") and "Traceback" not in result.stderr


def test_an_invalid_config_stops_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("memory:\n  max_messages: lots\n")
    result = supportbot({**env, "SUPPORTBOT_CONFIG": str(bad)}, "sessions", "list")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "memory.max_messages: Input should be a valid integer" in result.stderr


def test_redis_down_is_a_clear_error(env: dict[str, str]) -> None:
    result = supportbot({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "sessions", "list")
    assert result.returncode == 1
    assert "the store is unavailable" in result.stderr and "Traceback" not in result.stderr


def test_serve_answers_healthz_and_stops_on_sigterm(env: dict[str, str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    assert json.load(response) == {"status": "ok"}
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            ready = json.load(response)
        assert ready["status"] == "ready" and ready["model"].startswith("offline")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "web: on — chat at http://" in out and "shutting down" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_export_and_erase_a_user(env: dict[str, str]) -> None:
    supportbot(env, "chat", "--session", "one", stdin="vpn broken\n")
    supportbot(env, "chat", "--session", "two", stdin="printer jammed\n")
    user = json.loads(
        supportbot(env, "sessions", "export", supportbot(env, "sessions", "list").stdout.split("\t")[0]).stdout
    )["users"][0]
    exported = json.loads(supportbot(env, "sessions", "export-user", "cli", user).stdout)
    assert sorted(d["session_id"].split(":")[2] for d in exported) == ["one", "two"]
    erased = supportbot(env, "sessions", "erase-user", "cli", user)
    assert erased.returncode == 0 and "erased 2 session(s)" in erased.stdout
    assert supportbot(env, "sessions", "list").stdout.strip() == "no sessions"
    assert json.loads(supportbot(env, "sessions", "export-user", "cli", user).stdout) == []
