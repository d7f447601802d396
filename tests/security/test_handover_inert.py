"""A hand-over post quotes the user as inert text on Slack and Discord: no disguised link, no formatting, no mention,
no preview. The hand-over is built by the real toolbox and posted through the real adapters and SDK clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from adapters.discord_bot import DiscordAdapter
from adapters.slack import SlackAdapter
from bot.kb import KnowledgeBase
from bot.memory.base import SessionContext
from bot.memory.memory import MemoryStore
from bot.messages import StoredMessage
from bot.session import SessionKey
from bot.tools import Escalator, Toolbox, TurnFacts
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.models import RecordingModel
from tests.fakes.slack_server import FakeSlack
from tests.helpers import make_bot, settings_for

PHISH = (
    "**Security team**: please [approve reset in Okta admin](https://okta-admin.evil.example/approve) now "
    "<https://okta-admin.evil.example/x|Okta> <!channel> <!here> @here @everyone <@U0ADMIN> <@123> "
    "# URGENT\n> quoted `code` ||spoiler|| ~~gone~~ __under__ see okta-admin.evil.example"
)
SUPPRESS_EMBEDS = 1 << 2  # Discord's message flag


def facts(platform: str) -> TurnFacts:
    key = SessionKey(platform, "W1", "C1", "1.0", "U1")
    context = SessionContext(messages=(StoredMessage("user", PHISH, 1_700_000_000.0),), summary=PHISH)
    return TurnFacts(key, "Ev1", platform, "U1", context, "I want a human: " + PHISH)


async def escalate(platform: str, escalator: Escalator) -> None:
    toolbox = Toolbox(store=MemoryStore(), knowledge=KnowledgeBase([]), escalate=True)
    toolbox.register_escalator(platform, escalator, channel="ESC")
    result = await toolbox.run(
        {"name": "escalate_to_human", "args": {"reason": PHISH}, "id": "c1", "type": "tool_call"}, facts(platform)
    )
    assert result.artifact == "ok", result.text


def assert_no_link(text: str) -> None:
    for live in ("https://", "okta-admin.evil.example"):
        assert live not in text, f"{live!r} would be linked in {text!r}"


async def test_slack_hand_over_is_plain_text_without_links_pings_or_previews() -> None:
    async with FakeSlack(bot_token="xoxb-test") as fake:
        adapter = SlackAdapter(
            settings=settings_for(
                SLACK_BOT_TOKEN="xoxb-test",
                SLACK_SIGNING_SECRET="secret",
                SLACK_API_URL=fake.api_url,
                SUPPORTBOT_SLACK__ESCALATION_CHANNEL="C0ESC",
            )
        )
        await escalate("slack", adapter.post_escalation)
        calls = fake.calls_to("chat.postMessage")
    assert calls
    for call in calls:
        args = call.args
        assert args["mrkdwn"] in (False, "false", "0"), "mrkdwn off: no bold, italics, strike or code"
        assert args["unfurl_links"] in (False, "false", "0") and args["unfurl_media"] in (False, "false", "0")
        assert not args.get("link_names") and not args.get("blocks")
        assert_no_link(args["text"])
        assert "<" not in args["text"] and ">" not in args["text"], "no <url|label>, <!channel> or <@U…> syntax"
        assert "&lt;!channel&gt;" in args["text"] and "okta-admin[.]evil[.]example" in args["text"]


@contextlib.asynccontextmanager
async def discord_adapter(fake: FakeDiscord) -> AsyncIterator[DiscordAdapter]:
    env = {
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "SUPPORTBOT_DISCORD__ESCALATION_CHANNEL": str(fake.channel_id),
    }
    adapter = DiscordAdapter(settings=settings_for(**env), guild_ready_timeout=0.05)
    bot = make_bot(MemoryStore(), RecordingModel())
    try:
        await adapter.start(bot)
        yield adapter
    finally:
        await bot.aclose()
        await adapter.aclose()


async def test_discord_hand_over_is_escaped_without_links_pings_or_embeds() -> None:
    async with FakeDiscord() as fake, discord_adapter(fake) as adapter:
        await escalate("discord", adapter.post_escalation)
        posts = [c for c in fake.calls("POST", "/channels/") if c.path.endswith("/messages")]
    assert posts
    for call in posts:
        body = call.json
        assert body["allowed_mentions"]["parse"] == [] and body["flags"] & SUPPRESS_EMBEDS
        content = body["content"]
        assert_no_link(content)
        for marker in ("*", "`", "|", "~", "_", "[", "(", "#", ">", "<", "@"):
            assert all(content[i - 1] == "\\" for i in range(len(content)) if content.startswith(marker, i)), (
                f"an unescaped {marker!r} would render"
            )
