"""The web chat in a real headless Chromium (Debian's, driven by Playwright), against the real server and the fake
OpenAI server: Markdown that renders and cannot run, the typing indicator and streaming, resending after a failure
with the same message_id, a phone's width, contrast in both themes, history after a reload.

Screenshots land in the test's tmp folder; ``SUPPORTBOT_SCREENSHOTS=docs`` writes the README's into ``docs/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from adapters.web import WebAdapter
from bot.app import build_bot
from bot.config import Settings
from bot.core import SupportBot
from tests.fakes.openai_server import FakeOpenAI, content_text
from tests.helpers import settings_for
from tests.redis_server import free_port

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Request

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
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Playwright's default of 5 s per wait is short for two busy CI cores running a browser and a server.
WAIT_MS = 20_000

MARKDOWN_REPLY = """### Reconnect the VPN

The *GlobalProtect* client usually recovers after a fresh sign-in:

1. Click the **GlobalProtect** icon and choose **Disconnect**.
2. Quit the app, then flush the DNS cache:

```sh
sudo dscacheutil -flushcache && sudo killall -HUP mDNSResponder
```

3. Open it again and sign in with your work account.

| Symptom | Likely cause | Fix |
|---|---|---|
| Stuck on "Connecting…" | expired password | [reset it](https://passwords.example.com/reset) |
| Drops after 5 minutes | Wi-Fi power saving | turn off *Low Data Mode* |

> If it still fails, reply with the error code shown under **Details**.
"""

HOSTILE_REPLY = """Here you go:

<script>window.pwned = "script"</script>

<img src="x" onerror="window.pwned = 'img'">

[Open the portal](javascript:window.pwned=%22link%22) or <a href="javascript:window.pwned='raw'">this one</a>.

![status](https://tracker.example.com/pixel.png)
"""

STREAMED_REPLY = "Restart the laptop.\n\nThen sign in again."


class ScriptedModel:
    """The fake model's replies by the user's message; anything else is echoed."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        text = next((content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        return self.replies.get(text, f"echo: {text}")


@dataclass
class Served:
    """The bot and its web server on a fixed port, which can be stopped and started again like a real server.

    The bot reaches the fake model through ``model_link``, which can hold the model's answer.
    """

    bot: SupportBot
    settings: Settings
    model: ScriptedModel
    fake: FakeOpenAI
    model_link: FaultyLink
    port: int
    adapter: WebAdapter | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self.adapter = WebAdapter(settings=self.settings)
        await self.adapter.start(self.bot)

    async def stop(self) -> None:
        if self.adapter is not None:
            adapter, self.adapter = self.adapter, None
            await adapter.aclose()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    model = ScriptedModel()
    async with (
        FakeOpenAI(responder=model, chunk_size=8) as fake,
        FaultyLink(int(fake.base_url.rsplit(":", 1)[1].split("/")[0]), path=b"/v1/chat/completions") as model_link,
    ):
        port = free_port()
        settings = settings_for(
            f"{model_link.url}v1",
            SUPPORTBOT_MEMORY__STORE_URL=f"sqlite:///{tmp_path / 'web.db'}",
            PORT=str(port),
            # Only replies call the fake model, so the tests can count the model's turns.
            SUPPORTBOT_MEMORY__ENTITIES="false",
            SUPPORTBOT_MEMORY__SUMMARY="false",
            # A test may hold the model's answer while the page reloads or resends.
            SUPPORTBOT_LLM__TIMEOUT="120",
        )
        bot = build_bot(settings)
        server = Served(bot=bot, settings=settings, model=model, fake=fake, model_link=model_link, port=port)
        await server.start()
        try:
            yield server
        finally:
            await bot.aclose()
            await server.stop()
            await bot.store.aclose()


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[str]:
    """The server with no model configured: the offline knowledge-base responder answers."""
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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Console:
    """What the page reported on its own: script errors and dialogs (an injected ``alert`` would be one)."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


async def open_page(
    browser: Browser, url: str, *, viewport: dict[str, int] = DESKTOP, scheme: Literal["light", "dark"] = "light"
) -> tuple[Page, Console]:
    context = await browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
    page = await context.new_page()
    console = Console()
    page.on("pageerror", lambda error: console.errors.append(str(error)))
    page.on("dialog", lambda dialog: console.dialogs.append(dialog.message))
    await page.goto(url)
    return page, console


def chat_posts(page: Page) -> list[dict[str, Any]]:
    """Records the body of every ``POST /api/chat`` the page makes, including those that never reached a server."""
    bodies: list[dict[str, Any]] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/api/chat") and request.post_data:
            bodies.append(json.loads(request.post_data))

    page.on("request", record)
    return bodies


async def send(page: Page, text: str) -> None:
    await page.fill("#input", text)
    await page.press("#input", "Enter")


async def answered(page: Page, count: int) -> None:
    """Waits until ``count`` replies are on the page and the last one has finished streaming."""
    from playwright.async_api import expect

    await expect(page.locator(".msg.assistant")).to_have_count(count)
    await expect(page.locator(".msg.assistant[aria-busy]")).to_have_count(0)


# ---- A link between the browser and the server that can hold or cut the chat's answer ---------------------------


@dataclass
class Fault:
    """What to do to the next answer: hold it (until ``released`` is set) or cut the connection, once its headers
    and ``after_chunks`` of its ``event: chunk`` events have gone through."""

    action: Literal["hold", "cut"]
    after_chunks: int
    released: asyncio.Event = field(default_factory=asyncio.Event)


class FaultyLink:
    """A TCP relay in front of a server; the answers to ``POST <path>`` can be held or cut.

    In front of the web server the page is loaded through it, so every request of the page goes through it.
    """

    def __init__(self, upstream_port: int, *, path: bytes = b"/api/chat") -> None:
        self.upstream_port = upstream_port
        self.request_line = b"POST " + path + b" "
        self.next_fault: Fault | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def arm(self, action: Literal["hold", "cut"], *, after_chunks: int = 0) -> Fault:
        self.next_fault = Fault(action, after_chunks)
        return self.next_fault

    async def __aenter__(self) -> FaultyLink:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.next_fault is not None:
            self.next_fault.released.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            current: list[Fault | None] = [None]
            to_server = asyncio.create_task(self._requests(client_reader, upstream_writer, current))
            try:
                await self._answers(upstream_reader, client_writer, current)
            finally:
                to_server.cancel()
                await asyncio.gather(to_server, return_exceptions=True)
                upstream_writer.transport.abort()
                client_writer.transport.abort()
        except (ConnectionError, asyncio.IncompleteReadError):
            client_writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, current: list[Fault | None]
    ) -> None:
        while data := await reader.read(65_536):
            if data.startswith(self.request_line):
                current[0], self.next_fault = self.next_fault, None
            elif data[:4] in (b"GET ", b"POST", b"HEAD"):
                current[0] = None
            writer.write(data)
            await writer.drain()
        writer.write_eof()

    async def _answers(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, current: list[Fault | None]
    ) -> None:
        held = b""
        while data := await reader.read(65_536):
            fault = current[0]
            if fault is None:
                writer.write(data)
                await writer.drain()
                continue
            held += data
            cut_at = _after_chunk_events(held, fault.after_chunks)
            if cut_at is None:
                continue
            writer.write(held[:cut_at])
            await writer.drain()
            if fault.action == "cut":
                return
            await fault.released.wait()
            writer.write(held[cut_at:])
            await writer.drain()
            held = b""
            current[0] = None


def _after_chunk_events(data: bytes, count: int) -> int | None:
    """The offset just past the ``count``-th ``event: chunk`` (0: the whole header), or None if not there yet."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    offset = end + 4 if count == 0 else end
    for _ in range(count):
        start = data.find(b"event: chunk", offset)
        if start < 0:
            return None
        close = data.find(b"\n\n", start)
        if close < 0:
            return None
        offset = close + 2
        # The end of the HTTP chunk that carried the event, so the browser can hand the event to the page.
        if data.startswith(b"\r\n", offset):
            offset += 2
    return offset


# ---- Tests --------------------------------------------------------------------------------------------------------


async def test_a_reply_renders_as_markdown_with_copyable_code_and_safe_links(served: Served, browser: Browser) -> None:
    from playwright.async_api import expect

    served.model.replies["My VPN keeps dropping"] = MARKDOWN_REPLY
    page, console = await open_page(browser, served.url)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await send(page, "My VPN keeps dropping")
    await answered(page, 1)

    reply = page.locator(".msg.assistant .md")
    await expect(reply.get_by_role("heading", name="Reconnect the VPN")).to_be_visible()
    await expect(reply.locator("em").first).to_have_text("GlobalProtect")
    await expect(reply.locator("ol").last).to_have_attribute("start", "3")
    await expect(reply.locator("table tr")).to_have_count(3)
    await expect(reply.locator("table th")).to_have_text(["Symptom", "Likely cause", "Fix"])
    await expect(reply.locator("blockquote")).to_contain_text("error code")
    await expect(reply.locator("pre code")).to_have_text(
        "sudo dscacheutil -flushcache && sudo killall -HUP mDNSResponder\n"
    )
    link = reply.get_by_role("link", name="reset it")
    await expect(link).to_have_attribute("href", "https://passwords.example.com/reset")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert "**" not in await reply.inner_text() and "|---" not in await reply.inner_text()

    copy = reply.get_by_role("button", name="Copy sh code")
    await copy.click()
    await expect(copy).to_contain_text("Copied")
    clipboard = await page.evaluate("navigator.clipboard.readText()")
    assert clipboard == "sudo dscacheutil -flushcache && sudo killall -HUP mDNSResponder\n"

    # Screen readers hear who said what, and the reply once, from the page's only live region.
    await expect(page.locator(".msg.user h2")).to_have_text("You said:")
    await expect(page.locator(".msg.assistant h2")).to_have_text("Supportbot said:")
    await expect(page.locator("[aria-live]")).to_have_count(1)
    await expect(page.locator("#announcer")).to_contain_text("Supportbot said: Reconnect the VPN")
    assert console.errors == []


async def test_scripts_and_javascript_links_in_a_reply_are_inert(served: Served, browser: Browser) -> None:
    from playwright.async_api import expect

    served.model.replies["Open the portal for me"] = HOSTILE_REPLY
    page, console = await open_page(browser, served.url)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await send(page, "Open the portal for me")
    await answered(page, 1)

    reply = page.locator(".msg.assistant .md")
    await expect(reply).to_contain_text('<script>window.pwned = "script"</script>')  # shown, as text
    assert await page.locator(".md script, .md img, .md [onerror]").count() == 0
    await expect(reply).to_contain_text("""<a href="javascript:window.pwned='raw'">this one</a>""")
    assert await page.locator("#log [href^='javascript' i]").count() == 0
    anchor = reply.locator("a", has_text="Open the portal")
    await expect(anchor).to_have_count(1)
    assert await anchor.get_attribute("href") is None
    await anchor.click()
    # The image became a link: nothing was fetched from the tracker.
    await expect(reply.get_by_role("link", name="status")).to_have_attribute(
        "href", "https://tracker.example.com/pixel.png"
    )
    assert not [url for url in requests if "tracker.example.com" in url]
    assert await page.evaluate("window.pwned") is None
    assert console.dialogs == [] and console.errors == []
    assert len(page.context.pages) == 1


async def test_typing_indicator_then_the_reply_streams_in_place(served: Served, browser: Browser) -> None:
    from playwright.async_api import expect

    served.model.replies["My laptop froze"] = STREAMED_REPLY
    async with FaultyLink(served.port) as link:
        page, console = await open_page(browser, link.url)
        await expect(page.locator(".welcome")).to_be_visible()

        held = link.arm("hold")
        await send(page, "My laptop froze")
        assert not await page.locator("#input").input_value()
        await expect(page.locator(".msg.user .bubble")).to_have_text("My laptop froze")
        await expect(page.locator(".msg.assistant .typing")).to_be_visible()
        await expect(page.locator("#send")).to_be_disabled()
        await expect(page.locator("#announcer")).to_have_text("Supportbot is typing…")
        held.released.set()
        await answered(page, 1)
        await expect(page.locator(".msg.assistant .typing")).to_have_count(0)
        await expect(page.locator(".msg.assistant .md p")).to_have_text(STREAMED_REPLY.split("\n\n"))

        # The first paragraph is on the page before the answer is complete, and stays the same node to the end.
        served.model.replies["It froze again"] = STREAMED_REPLY
        partial = link.arm("hold", after_chunks=3)  # "Restart ", "the lapt", "op.\n\nThe"
        await send(page, "It froze again")
        second = page.locator(".msg.assistant").nth(1)
        await expect(second.locator(".md p")).to_have_text(["Restart the laptop.", "The"])
        await expect(second).to_have_attribute("aria-busy", "true")
        await expect(second.locator(".typing")).to_be_hidden()
        first_paragraph = await second.locator(".md p").first.element_handle()
        partial.released.set()
        await answered(page, 2)
        await expect(second.locator(".md p")).to_have_text(["Restart the laptop.", "Then sign in again."])
        assert await first_paragraph.evaluate("p => p.isConnected")
        assert console.errors == []


async def test_server_down_keeps_the_text_and_retry_resends_the_same_message_id(
    served: Served, browser: Browser
) -> None:
    from playwright.async_api import expect

    page, console = await open_page(browser, served.url)
    posts = chat_posts(page)
    await expect(page.locator(".welcome")).to_be_visible()
    await served.stop()

    await send(page, "Outlook asks for my password again and again")
    failed = page.locator(".msg.user.failed")
    await expect(failed.locator(".bubble")).to_have_text("Outlook asks for my password again and again")
    await expect(failed.get_by_role("alert")).to_contain_text("Not sent. Could not reach the helpdesk.")
    await expect(page.locator(".msg.assistant")).to_have_count(0)  # no orphan bubble
    await expect(page.locator("#send")).to_be_enabled()

    await served.start()
    await failed.get_by_role("button", name="Retry").click()
    await answered(page, 1)
    await expect(page.locator(".msg.assistant .md")).to_have_text("echo: Outlook asks for my password again and again")
    await expect(page.locator(".msg.user.failed, .delivery")).to_have_count(0)

    assert len(posts) == 2 and posts[0]["message_id"] == posts[1]["message_id"]
    history = await (await page.request.get(f"{served.url}api/sessions/{posts[0]['session_id']}/history")).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert console.errors == []


async def test_a_connection_dropped_mid_reply_resends_the_same_message_id_and_gets_the_stored_answer(
    served: Served, browser: Browser
) -> None:
    from playwright.async_api import expect

    served.model.replies["The printer is offline"] = MARKDOWN_REPLY
    async with FaultyLink(served.port) as link:
        page, console = await open_page(browser, link.url)
        posts = chat_posts(page)
        await expect(page.locator(".welcome")).to_be_visible()
        link.arm("cut", after_chunks=2)
        await send(page, "The printer is offline")
        await answered(page, 1)
        await expect(page.locator(".msg.assistant .md table tr")).to_have_count(3)
        await expect(page.locator(".msg.assistant .md")).not_to_contain_text("Trying again")

    assert len(posts) >= 2 and len({post["message_id"] for post in posts}) == 1
    history = await (await page.request.get(f"{served.url}api/sessions/{posts[0]['session_id']}/history")).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert history["messages"][1]["content"] == MARKDOWN_REPLY
    assert len(served.fake.requests) == 1  # the model answered once; the resend got the stored answer
    assert console.errors == []


async def test_a_reload_mid_reply_asks_again_with_the_same_message_id(served: Served, browser: Browser) -> None:
    from playwright.async_api import expect

    served.model.replies["Teams has no sound"] = STREAMED_REPLY
    page, console = await open_page(browser, served.url)
    posts = chat_posts(page)
    await expect(page.locator(".welcome")).to_be_visible()
    model_answer = served.model_link.arm("hold")
    await send(page, "Teams has no sound")
    await expect(page.locator(".msg.assistant .typing")).to_be_visible()
    async with page.expect_request(lambda request: request.method == "POST" and request.url.endswith("/api/chat")):
        await page.reload()
    await expect(page.locator(".msg.assistant .typing")).to_be_visible()
    model_answer.released.set()
    await answered(page, 1)
    await expect(page.locator(".msg.user")).to_have_count(1)
    await expect(page.locator(".msg.assistant .md p")).to_have_text(STREAMED_REPLY.split("\n\n"))

    await page.reload()  # answered now: restored from history, nothing sent again
    await expect(page.locator(".msg")).to_have_count(2)
    await expect(page.locator(".msg.assistant .md p")).to_have_text(STREAMED_REPLY.split("\n\n"))
    assert len(posts) == 2 and posts[0]["message_id"] == posts[1]["message_id"]
    assert len(served.fake.requests) == 1
    assert console.errors == []


async def test_history_after_a_reload_renders_markdown_too(served: Served, browser: Browser) -> None:
    from playwright.async_api import expect

    served.model.replies["My VPN keeps dropping"] = MARKDOWN_REPLY
    page, _ = await open_page(browser, served.url)
    await send(page, "My VPN keeps dropping")
    await answered(page, 1)
    await page.reload()

    await expect(page.locator(".msg")).to_have_count(2)
    await expect(page.locator(".msg.user .bubble")).to_have_text("My VPN keeps dropping")
    restored = page.locator(".msg.assistant .md")
    await expect(restored.locator("table tr")).to_have_count(3)
    await expect(restored.locator("pre code")).to_contain_text("dscacheutil")
    await expect(restored.get_by_role("button", name="Copy sh code")).to_be_visible()
    await expect(restored.get_by_role("link", name="reset it")).to_have_attribute("rel", "noopener noreferrer")
    await expect(page.locator(".msg.assistant[aria-busy], .typing")).to_have_count(0)


async def test_two_tabs_hold_two_private_conversations(offline: str, browser: Browser) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport=PHONE)
    tab_a, tab_b = await context.new_page(), await context.new_page()
    await tab_a.goto(offline)
    await tab_b.goto(offline)
    for tab, first in ((tab_a, "My VPN is not working"), (tab_b, "I cannot access email")):
        await send(tab, first)
        await answered(tab, 1)
        await expect(tab.locator(".msg.assistant").last).to_contain_text("knowledge base")
    for tab in (tab_a, tab_b):
        await send(tab, "What issue did I report?")
        await answered(tab, 2)

    text_a = await tab_a.locator("#log").inner_text()
    text_b = await tab_b.locator("#log").inner_text()
    assert "My VPN is not working" in text_a and "I cannot access email" not in text_a
    assert "I cannot access email" in text_b and "My VPN is not working" not in text_b

    await tab_a.reload()
    await expect(tab_a.locator(".msg")).to_have_count(4)
    await expect(tab_a.locator(".msg.user .bubble").first).to_have_text("My VPN is not working")

    await tab_a.get_by_role("button", name="New conversation").click()
    await expect(tab_a.locator(".msg")).to_have_count(0)
    await tab_a.reload()
    await expect(tab_a.locator(".welcome")).to_be_visible()
    await expect(tab_a.locator(".msg")).to_have_count(0)

    # A topic from the knowledge base starts a conversation in one tap.
    await tab_a.get_by_role("button", name="VPN not connecting or dropping").click()
    await answered(tab_a, 1)
    await expect(tab_a.locator(".msg.user .bubble")).to_have_text("VPN not connecting or dropping")
    await context.close()


async def test_a_phone_gets_a_whole_header_a_fitting_placeholder_and_a_growing_input(
    served: Served, browser: Browser
) -> None:
    from playwright.async_api import expect

    served.model.replies["Wide things please"] = MARKDOWN_REPLY
    page, _ = await open_page(browser, served.url, viewport=PHONE)
    await expect(page.locator("#title")).to_have_text("Supportbot")
    for selector in ("#title", ".tagline"):
        clipped = await page.locator(selector).evaluate(
            "e => e.scrollWidth > e.clientWidth || e.getBoundingClientRect().right > "
            "document.getElementById('new').getBoundingClientRect().left"
        )
        assert not clipped, selector
    await expect(page.get_by_role("button", name="New conversation")).to_be_visible()

    placeholder_fits = await page.locator("#input").evaluate(
        """e => {
            const style = getComputedStyle(e);
            const context = document.createElement("canvas").getContext("2d");
            context.font = `${style.fontSize} ${style.fontFamily}`;
            const room = e.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return context.measureText(e.placeholder).width <= room;
        }"""
    )
    assert placeholder_fits

    box = page.locator("#input")
    one_line = (await box.bounding_box() or {})["height"]
    await box.fill("line\n" * 3 + "line")
    four_lines = (await box.bounding_box() or {})["height"]
    assert four_lines >= one_line + 3 * 20, (one_line, four_lines)
    assert await box.evaluate("e => getComputedStyle(e).overflowY") == "hidden"
    await box.fill("line\n" * 40)
    capped = (await box.bounding_box() or {})["height"]
    assert four_lines < capped <= PHONE["height"] * 0.4 + 1
    assert await box.evaluate("e => getComputedStyle(e).overflowY") == "auto"

    await box.fill("Wide things please")
    await box.press("Enter")
    await answered(page, 1)
    await expect(box).to_have_js_property("offsetHeight", round(one_line))
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert await page.locator(".msg.assistant .md").evaluate("e => e.scrollWidth <= e.clientWidth")


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    def parse(css: str) -> tuple[float, float, float]:
        parts = css[css.index("(") + 1 : css.index(")")].replace(",", " ").split()
        assert len(parts) == 3 or float(parts[3]) == 1, f"{css}: measure opaque colours only"
        return float(parts[0]), float(parts[1]), float(parts[2])

    high, low = sorted((_luminance(parse(a)), _luminance(parse(b))), reverse=True)
    return (high + 0.05) / (low + 0.05)


# (what, foreground element and property, background element and property, WCAG 2.2 AA minimum)
CONTRAST_CHECKS: list[tuple[str, str, str, str, str, float]] = [
    ("send button text", "#send", "color", "#send", "background-color", 4.5),
    ("send button against the field", "#send", "background-color", ".box", "background-color", 3.0),
    ("input border", ".box", "border-top-color", "body", "background-color", 3.0),
    ("typed text", "#input", "color", ".box", "background-color", 4.5),
    ("header tagline", ".tagline", "color", "body", "background-color", 4.5),
    ("fine print", ".fineprint", "color", "body", "background-color", 4.5),
    ("new conversation button", "#new", "color", "body", "background-color", 4.5),
    ("new conversation border", "#new", "border-top-color", "body", "background-color", 3.0),
    ("your message", ".msg.user .bubble", "color", ".msg.user .bubble", "background-color", 4.5),
    ("reply text", ".msg.assistant .md", "color", "body", "background-color", 4.5),
    ("link in a reply", ".md a[href]", "color", "body", "background-color", 4.5),
    ("code", ".md pre code", "color", ".code-block", "background-color", 4.5),
    ("code language and copy", ".code-lang", "color", ".code-bar", "background-color", 4.5),
    ("table header", ".md th", "color", ".md th", "background-color", 4.5),
    ("quote", ".md blockquote", "color", "body", "background-color", 4.5),
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_colours_meet_wcag_aa_contrast(
    served: Served, browser: Browser, scheme: Literal["light", "dark"]
) -> None:
    from playwright.async_api import expect

    served.model.replies["Show me everything"] = MARKDOWN_REPLY
    page, _ = await open_page(browser, served.url, scheme=scheme)
    await send(page, "Show me everything")
    await answered(page, 1)
    await page.fill("#input", "typed")
    await expect(page.locator(".msg.assistant .md table")).to_be_visible()
    assert await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")

    async def style(selector: str, prop: str) -> str:
        value = await page.locator(selector).first.evaluate("(e, p) => getComputedStyle(e).getPropertyValue(p)", prop)
        return str(value)

    failures = []
    for what, fg, fg_prop, bg, bg_prop, minimum in CONTRAST_CHECKS:
        ratio = _contrast(await style(fg, fg_prop), await style(bg, bg_prop))
        if ratio < minimum:
            failures.append(f"{what}: {ratio:.2f} < {minimum}")
    placeholder = await page.locator("#input").evaluate("e => getComputedStyle(e, '::placeholder').color")
    ratio = _contrast(placeholder, await style(".box", "background-color"))
    if ratio < 4.5:
        failures.append(f"placeholder: {ratio:.2f} < 4.5")
    assert failures == []


async def test_the_page_uses_only_its_own_files_and_says_nothing_internal(served: Served, browser: Browser) -> None:
    page, console = await open_page(browser, served.url)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.reload()
    await page.wait_for_load_state("networkidle")
    assert requests and all(url.startswith(served.url) for url in requests), requests

    index = await page.request.get(served.url)
    csp = index.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    favicon = await page.request.get(served.url + "favicon.ico")
    assert favicon.ok and favicon.headers["content-type"] == "image/svg+xml" and b"<svg" in await favicon.body()
    for name in ("vendor/marked.umd.js", "vendor/purify.min.js", "vendor/marked.LICENSE.md"):
        response = await page.request.get(f"{served.url}static/{name}")
        assert response.ok, name
        again = await page.request.get(
            f"{served.url}static/{name}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status == 304, name
    for missing in ("static/nope.js", "static/../app.py", "static/%2e%2e/app.py", "static/vendor"):
        assert (await page.request.get(served.url + missing)).status == 404, missing

    info = await (await page.request.get(served.url + "api/info")).json()
    assert info["name"] == "Supportbot" and info["model"] == served.settings.llm.model
    assert "VPN not connecting or dropping" in info["topics"]
    assert "127.0.0.1" not in json.dumps(info) and "://" not in json.dumps(info)

    header = await page.locator("header").inner_text()
    footer = await page.locator(".composer").inner_text()
    assert "Supportbot" in header and "IT helpdesk" in header
    for shown in (header, footer):
        assert "127.0.0.1" not in shown and "sqlite" not in shown and served.settings.llm.model not in shown
    session_id = await page.evaluate("sessionStorage.getItem('supportbot.session')")
    assert session_id not in await page.locator("body").inner_text()
    assert console.errors == []


async def test_screenshots_at_desktop_and_phone_widths_in_both_themes(
    served: Served, browser: Browser, tmp_path: Path
) -> None:
    target = Path(os.environ.get("SUPPORTBOT_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    served.model.replies["My VPN keeps dropping since this morning"] = MARKDOWN_REPLY
    shots: list[Path] = []
    for scheme in ("light", "dark"):
        for device, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page, console = await open_page(browser, served.url, viewport=viewport, scheme=scheme)  # type: ignore[arg-type]
            await send(page, "My VPN keeps dropping since this morning")
            await answered(page, 1)
            await page.fill("#input", "It says 'Connecting…' forever, on Wi-Fi and on ethernet.")
            await page.locator("#log").evaluate("e => { e.scrollTop = 0; }")
            suffix = "" if scheme == "light" else "-dark"
            path = target / f"web-chat-{device}{suffix}.png"
            await page.screenshot(path=str(path))
            shots.append(path)
            assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            assert console.errors == []
            await page.context.close()
    assert all(path.stat().st_size > 10_000 for path in shots)
