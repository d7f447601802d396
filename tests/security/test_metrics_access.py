"""/metrics holds counts only and stays open by default; ``web.metrics_require_token`` puts it behind the web token."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.web import create_app
from bot.app import build_bot
from bot.config import load_settings
from bot.errors import ConfigError
from tests.helpers import settings_for

TOKEN = "metrics-web-token"


async def status(extra_env: dict[str, str], path: str, **headers: str) -> int:
    settings = settings_for(SUPPORTBOT_MEMORY__STORE_URL="memory://", SUPPORTBOT_WEB_TOKEN=TOKEN, **extra_env)
    bot = build_bot(settings)
    async with TestClient(TestServer(create_app(bot, settings))) as client:
        response = await client.get(path, headers=headers)
        code = response.status
    await bot.aclose()
    return code


async def test_metrics_are_open_by_default_even_with_a_web_token() -> None:
    assert await status({}, "/metrics") == 200


async def test_metrics_can_require_the_web_token() -> None:
    required = {"SUPPORTBOT_WEB__METRICS_REQUIRE_TOKEN": "true"}
    assert await status(required, "/metrics") == 401
    assert await status(required, "/metrics", Authorization="Bearer wrong") == 401
    assert await status(required, "/metrics", Authorization=f"Bearer {TOKEN}") == 200
    assert await status(required, "/healthz") == 200 and await status(required, "/readyz") == 200


def test_requiring_the_token_without_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SUPPORTBOT_WEB_TOKEN"):
        load_settings("/dev/null", env={"SUPPORTBOT_WEB__METRICS_REQUIRE_TOKEN": "true"})
