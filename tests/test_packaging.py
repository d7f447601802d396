"""What ``pip install .`` gives: a bot with its sample help articles, whatever folder it runs in."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_an_installed_wheel_answers_from_its_own_sample_articles(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("supportbot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    articles = sorted(n for n in names if n.startswith("bot/sample_kb/"))
    assert len(articles) == len(list((REPO / "bot" / "sample_kb").glob("*.md"))) > 0

    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "SUPPORTBOT_"))}
    env.update(PYTHONPATH=str(site), HOME=str(home), SUPPORTBOT_MEMORY__EMBEDDINGS="hashing")
    env.pop("XDG_DATA_HOME", None)
    env.pop("XDG_STATE_HOME", None)
    chat = subprocess.run(
        [sys.executable, "-c", "import bot, sys; print(bot.__file__); from bot.cli import main; main(['chat'])"],
        input="My VPN keeps dropping\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
    )
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.startswith(str(site)), "the installed copy ran, not the checkout"
    assert "From the help article **VPN not connecting or dropping**" in chat.stdout
    assert (home / ".local" / "share" / "supportbot" / "supportbot.db").exists()
    assert sorted(p.name for p in home.iterdir()) == [".local"], "no data/ folder where the command ran"
