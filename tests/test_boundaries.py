"""The core imports no platform SDK, and the public surface is what it says."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

PLATFORM_MODULES = ("slack_bolt", "slack_sdk", "discord", "aiohttp.web")


def test_core_and_stores_import_no_platform_sdk() -> None:
    code = (
        "import sys, bot.core, bot.app, bot.memory.memory, bot.memory.sqlite, bot.memory.redis, bot.cli\n"
        f"print([m for m in {PLATFORM_MODULES!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_offline_default_does_not_import_the_openai_client() -> None:
    code = (
        "import sys\nfrom bot.app import build_bot\nfrom bot.config import load_settings\n"
        "build_bot(load_settings('/dev/null', env={'SUPPORTBOT_MEMORY__STORE_URL': 'memory://'}))\n"
        "print('langchain_openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_surface() -> None:
    import bot

    assert sorted(bot.__all__) == sorted(
        [
            "IncomingMessage",
            "Reply",
            "ReplyKind",
            "Scope",
            "SessionKey",
            "SupportBot",
            "__version__",
        ]
    )
    for name in bot.__all__:
        assert getattr(bot, name) is not None
    assert bot.__version__ == importlib.metadata.version("supportbot"), "pyproject.toml and bot/__init__.py agree"
