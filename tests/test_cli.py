"""The ``supportbot`` command, run as a user would: a real process, piped stdin, the embedded store."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.inbox.sqlite import SqliteInbox
from bot.memory.sqlite import SqliteStore
from bot.messages import IncomingMessage, StoredMessage
from bot.session import SessionKey
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    # The CLI is under test, not the embedding model: hashing spares each chat process loading a local model.
    config.write_text(
        "memory:\n  store_url: sqlite:///sessions.db\n  embeddings: hashing\nlog:\n  chat_file: chat.log\n"
    )
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
    assert "user: my laptop is slow" in shown.stdout and "1 turn\n" in shown.stdout
    exported = json.loads(supportbot(env, "sessions", "export", session_id).stdout)
    assert exported["session_id"] == session_id
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert supportbot(env, "sessions", "delete", session_id).returncode == 0
    assert supportbot(env, "sessions", "list").stdout.strip() == "no sessions"
    missing = supportbot(env, "sessions", "show", session_id)
    assert missing.returncode == 1 and "no session" in missing.stderr


def test_a_bad_session_id_is_a_clear_error(env: dict[str, str]) -> None:
    supportbot(env, "chat", stdin="printer jammed\n")
    result = supportbot(env, "sessions", "show", "https://example.org/not/a/thread")
    assert result.returncode == 2
    assert (
        result.stderr.startswith("supportbot: not a Slack or Discord message link") and "Traceback" not in result.stderr
    )
    missing = supportbot(env, "sessions", "show", "no-such-name")
    assert missing.returncode == 1 and "no session matches 'no-such-name'" in missing.stderr


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
        listed = supportbot(env, "sessions", "list")  # before any message: serve created the database
        assert listed.returncode == 0 and listed.stdout == "no sessions\n", listed.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            ready = json.load(response)
        assert ready["status"] == "ready" and ready["model"].startswith("offline")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "web: on — chat at http://" in out and "shutting down" in out
        assert "knowledge base: 8 articles in " in out and "bot/sample_kb (the sample articles" in out
        assert "recall: hashing-1024" in out and "set OPENAI_API_KEY" in out
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


def store_turn(env: dict[str, str], key: SessionKey, text: str) -> None:
    """A turn written straight to the chat's SQLite file, as another surface (web, Slack) would."""

    async def write() -> None:
        store = SqliteStore(str(Path(env["SUPPORTBOT_CONFIG"]).parent / "sessions.db"))
        start = await store.begin_turn(key, event_id=f"{key.id}:{text}", window=10)
        assert start.lease is not None
        await store.commit_turn(start.lease, (StoredMessage("user", text, 1.0, user=key.user),), platform=key.platform)
        await store.aclose()

    asyncio.run(write())


def test_sessions_take_the_ids_people_see(env: dict[str, str]) -> None:
    supportbot(env, "chat", stdin="printer jammed\n")  # the session named default
    tab = "7d653dd7-211f-4c1e-9a7a-0c2b1f3e4d5a"
    store_turn(env, SessionKey("web", None, tab, None, tab), "vpn drops in the browser")
    for user in ("U1", "U2"):
        store_turn(env, SessionKey("slack", "T1", "C0123ABCD", "1700000000.000100", user), f"{user} says wifi is down")
    store_turn(env, SessionKey("slack", "T1", "C0123ABCD", "1700000500.000200", "U1"), "another thread")

    by_name = supportbot(env, "sessions", "show", "default")
    assert by_name.returncode == 0 and "user: printer jammed" in by_name.stdout
    assert "terminal session 'default'" in by_name.stdout
    by_tab = supportbot(env, "sessions", "show", tab)
    assert by_tab.returncode == 0 and "vpn drops in the browser" in by_tab.stdout and f"web tab {tab}" in by_tab.stdout
    reply_link = "https://acme.slack.com/archives/C0123ABCD/p1700000000000300?thread_ts=1700000000.000100&cid=C0123ABCD"
    shared = supportbot(env, "sessions", "show", reply_link)
    assert shared.returncode == 2 and "matches 2 sessions" in shared.stderr, "a thread with two users' sessions"
    thread_link = "https://acme.slack.com/archives/C0123ABCD/p1700000500000200"
    one = supportbot(env, "sessions", "show", thread_link)
    assert one.returncode == 0 and "another thread" in one.stdout

    listing = supportbot(env, "sessions", "list").stdout.splitlines()
    assert len(listing) == 5 and all(line.count("\t") == 3 for line in listing)
    for line in listing:  # every printed id can be pasted back
        pasted = supportbot(env, "sessions", "export", line.split("\t")[0])
        assert pasted.returncode == 0 and json.loads(pasted.stdout)["session_id"] == line.split("\t")[0]


def test_version_and_help_answer_without_loading_the_bot(env: dict[str, str]) -> None:
    version = supportbot(env, "--version")
    assert (
        version.returncode == 0 and version.stdout.strip() == f"supportbot {importlib.metadata.version('supportbot')}"
    )
    script = "import sys; from bot.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    script += "print(sorted(m for m in ('langchain_core', 'pydantic', 'aiosqlite', 'redis') if m in sys.modules))"
    helped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert "Usage: " in helped.stdout and helped.stdout.strip().endswith("[]"), "nothing heavy is imported for --help"


@pytest.mark.parametrize(
    ("variables", "blamed"),
    [
        ({"REDIS_URL": "http://x"}, "REDIS_URL: expected a redis://"),
        ({"SUPPORTBOT_MEMORY__IDLE_TTL": "banana"}, "SUPPORTBOT_MEMORY__IDLE_TTL: expected a duration"),
        ({"SUPPORTBOT_MEMORY__STORE_URL": "postgres://db/x"}, "SUPPORTBOT_MEMORY__STORE_URL: expected a memory://"),
        ({"SUPPORTBOT_KB__PATH": "/no/such/folder"}, "SUPPORTBOT_KB__PATH: no folder of help articles at /no/such"),
        ({"PORT": "eighty"}, "PORT: expected a port number"),
    ],
)
def test_a_bad_setting_is_one_line_exit_2_naming_where_it_came_from(
    env: dict[str, str], variables: dict[str, str], blamed: str
) -> None:
    result = supportbot({**env, **variables}, "chat", stdin="hello\n")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"supportbot: config error: {blamed}")
    assert result.stderr.count("\n") == 1 and "config.yaml" not in result.stderr and "Value error" not in result.stderr


def test_administration_never_creates_a_database(env: dict[str, str], tmp_path: Path) -> None:
    typo = tmp_path / "sesions.db"
    result = supportbot({**env, "SUPPORTBOT_MEMORY__STORE_URL": f"sqlite:///{typo}"}, "sessions", "list")
    assert result.returncode == 1
    assert f"found no SQLite database at {typo} (from SUPPORTBOT_MEMORY__STORE_URL)" in result.stderr
    assert not typo.exists()


def test_relative_paths_are_taken_from_the_config_files_folder(env: dict[str, str], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    chat = supportbot(env, "chat", stdin="my printer is jammed\n", cwd=elsewhere)
    assert chat.returncode == 0, chat.stderr
    assert (tmp_path / "sessions.db").exists() and (tmp_path / "chat.log").exists()
    assert list(elsewhere.iterdir()) == [], "nothing is created in the folder the command runs in"
    assert "From the help article **Printer problems and adding a printer**" in chat.stdout, "the sample articles ship"


def test_chat_keeps_the_log_out_of_the_conversation(env: dict[str, str], tmp_path: Path) -> None:
    quiet = supportbot(env, "chat", stdin="my vpn drops\n")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "turn done" in (tmp_path / "chat.log").read_text(), "the log went to log.chat_file"
    verbose = supportbot(env, "chat", "-v", stdin="my vpn drops again\n")
    assert verbose.returncode == 0 and "turn done" in verbose.stderr and "turn done" not in verbose.stdout


def test_chat_with_an_unreachable_store_exits_non_zero(env: dict[str, str]) -> None:
    result = supportbot({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "chat", stdin="my vpn drops\n")
    assert result.returncode == 1 and "bot> " not in result.stdout
    assert result.stderr.startswith("supportbot: the store is unavailable") and result.stderr.count("\n") == 1


def test_serve_names_a_taken_port_before_anything_else(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = supportbot({**env, "PORT": str(port)}, "serve")
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr
        == f"supportbot: port {port} on 127.0.0.1 is already in use (PORT); set PORT to a free port, e.g. PORT=8081\n"
    )


def test_inbox_lists_what_waits_oldest_first(env: dict[str, str], tmp_path: Path) -> None:
    empty = supportbot(env, "chat", stdin="")  # creates the database
    assert empty.returncode == 0, empty.stderr
    assert "the inbox is empty" in supportbot(env, "inbox").stdout

    async def record() -> None:
        inbox = SqliteInbox(str(tmp_path / "sessions.db"), consumer="host-a:8080")
        for n in (1, 2):
            msg = IncomingMessage("slack", "T1", "C1", "1700.1", "U1", f"question {n}", f"C1:1700.{n}")
            await inbox.put(msg, route={"kind": "answer"}, session_id="slack:T1:C1:1700.1:U1")
        await inbox.take(limit=5, wait=1)  # the first is held by a worker; the second waits behind it
        await inbox.aclose()

    asyncio.run(record())
    listed = supportbot(env, "inbox")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("2 waiting, 1 being answered")
    assert "C1:1700.1" in lines[1] and "held by host-a:8080" in lines[1]
    assert "C1:1700.2" in lines[2] and lines[2].endswith("waiting")
