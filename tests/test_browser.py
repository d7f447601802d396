"""The web chat in a real headless Chromium: two tabs, two private conversations, a reload restores one."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.web import WebAdapter
from bot.app import build_bot
from tests.helpers import settings_for
from tests.redis_server import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it",
)

LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    settings = settings_for(SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path / 'web.db'}", PORT=str(port))
    bot = build_bot(settings)
    adapter = WebAdapter(settings=settings)
    await adapter.start(bot)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await bot.aclose()
        await adapter.aclose()
        await bot.store.aclose()


async def send(page: object, text: str, answers: int) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    await page.fill("#input", text)
    await page.press("#input", "Enter")
    await expect(page.locator(".msg.assistant")).to_have_count(answers)
    # The whole answer is in: a first reply ends with the note that it comes from the knowledge base, a recap with
    # what the user told the bot.
    finished = re.compile("knowledge base|what you have told me")
    await expect(page.locator(".msg.assistant").last).to_contain_text(finished, timeout=10_000)


async def test_two_tabs_hold_two_private_conversations(server: str, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = await browser.new_context(viewport={"width": 390, "height": 800})  # a phone's width
        try:
            tab_a, tab_b = await context.new_page(), await context.new_page()
            await tab_a.goto(server)
            await tab_b.goto(server)
            await expect(tab_a.locator("#meta")).to_contain_text("store: sqlite")
            await send(tab_a, "My VPN is not working", 1)
            await send(tab_b, "I cannot access email", 1)
            await send(tab_a, "What issue did I report?", 2)
            await send(tab_b, "What issue did I report?", 2)

            text_a = await tab_a.locator("#log").inner_text()
            text_b = await tab_b.locator("#log").inner_text()
            assert "My VPN is not working" in text_a and "I cannot access email" not in text_a
            assert "I cannot access email" in text_b and "My VPN is not working" not in text_b

            await tab_a.reload()
            await expect(tab_a.locator(".msg")).to_have_count(4)
            assert await tab_a.locator(".msg.user").first.inner_text() == "My VPN is not working"
            await tab_a.screenshot(path=str(tmp_path / "two-tabs.png"), full_page=True)

            await tab_a.click("#new")
            await expect(tab_a.locator(".msg")).to_have_count(0)
            await tab_a.reload()
            await expect(tab_a.locator(".empty")).to_be_visible()
            await expect(tab_a.locator(".msg")).to_have_count(0)
        finally:
            await context.close()
            await browser.close()
