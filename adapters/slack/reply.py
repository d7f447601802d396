"""Posting replies into Slack threads: native streaming where the workspace has it, else post + throttled update."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.translate import MESSAGE_CHARS, split_message, to_mrkdwn

log = logging.getLogger("supportbot.slack")

STREAM_FLUSH_CHARS = 256  # append to the stream once this much text is waiting…
STREAM_FLUSH_S = 0.5  # …or this many seconds passed since the last append
UPDATE_EVERY_S = 1.0  # chat.update is rate limited (Tier 3); edit a fallback message at most once a second
# Errors that mean "this workspace, channel or app cannot stream": fall back to post + update for good.
STREAMING_UNAVAILABLE = frozenset(
    {
        "unknown_method",
        "not_allowed",
        "not_allowed_token_type",
        "missing_scope",
        "method_not_supported_for_channel_type",
    }
)


def slack_error(exc: SlackApiError) -> str:
    """The ``error`` code of a Slack API failure."""
    data = exc.response.data if exc.response is not None else None
    return str(data.get("error", "unknown")) if isinstance(data, dict) else "unknown"


REPLY_EVENT = "supportbot_reply"  # the metadata event type that marks a reply with the message it answers


def reply_tag(event_id: str) -> dict[str, Any]:
    """Message metadata naming the message a reply answers, so a later attempt can tell its reply from others."""
    return {"event_type": REPLY_EVENT, "event_payload": {"event_id": event_id}}


def tagged_for(message: dict[str, Any]) -> str | None:
    """The event id a bot message's metadata says it answers, or ``None`` when it carries none."""
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != REPLY_EVENT:
        return None
    payload = metadata.get("event_payload")
    return str(payload.get("event_id")) if isinstance(payload, dict) else None


class Replier:
    """Delivers the core's reply chunks to one thread."""

    def __init__(self, client: AsyncWebClient, *, stream: bool) -> None:
        self._client = client
        self._stream = stream

    async def post(
        self, *, channel: str, thread_ts: str | None, text: str, tag: dict[str, Any] | None = None
    ) -> list[str]:
        """Post ``text`` (markdown) into the thread, split when over Slack's limits; returns the parts' ``ts``.

        ``tag`` (see :func:`reply_tag`) goes on the first part as its metadata.
        """
        posted: list[str] = []
        for index, part in enumerate(split_message(text)):
            extra = {"metadata": tag} if tag is not None and index == 0 else {}
            response = await self._client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=to_mrkdwn(part), unfurl_links=False, **extra
            )
            posted.append(str(response["ts"]))
        return posted

    async def post_ephemeral(self, *, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        """Post ``text`` that only ``user`` sees."""
        for part in split_message(text):
            await self._client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=to_mrkdwn(part))

    async def deliver(
        self,
        chunks: AsyncIterator[str],
        *,
        channel: str,
        thread_ts: str | None,
        team_id: str | None,
        user_id: str,
        existing_ts: str | None = None,
        on_posted: Callable[[str], Awaitable[None]] | None = None,
        tag: dict[str, Any] | None = None,
    ) -> str:
        """Show the reply as it is written; returns the whole text ("" when there was nothing to post).

        Args:
            existing_ts: a message an earlier attempt started (and died in): the whole reply is written there.
            on_posted: told the ``ts`` of the reply's first message as soon as Slack has created it.
            tag: metadata for the reply's first message (see :func:`reply_tag`), set once the reply is complete (a
                streamed message takes metadata only when it stops).
        """
        first = await anext(chunks, None)
        if first is None:
            return ""
        if existing_ts is not None:
            text = first + "".join([chunk async for chunk in chunks])
            await self.finish(channel=channel, thread_ts=thread_ts, existing_ts=existing_ts, text=text, tag=tag)
            return text
        if self._stream and thread_ts is not None:
            try:
                started = await self._client.chat_startStream(
                    channel=channel,
                    thread_ts=thread_ts,
                    markdown_text=first,
                    recipient_team_id=team_id,
                    recipient_user_id=user_id,
                )
            except SlackApiError as exc:
                if slack_error(exc) not in STREAMING_UNAVAILABLE:
                    raise
                log.info("streaming unavailable (%s); posting and updating instead", slack_error(exc))
                self._stream = False
            else:
                ts = str(started["ts"])
                if on_posted is not None:
                    await on_posted(ts)
                return await self._continue_stream(chunks, channel=channel, ts=ts, text=first, tag=tag)
        return await self._post_and_update(
            chunks, channel=channel, thread_ts=thread_ts, text=first, on_posted=on_posted, tag=tag
        )

    async def finish(
        self,
        *,
        channel: str,
        thread_ts: str | None,
        existing_ts: str | None,
        text: str,
        tag: dict[str, Any] | None = None,
    ) -> None:
        """Show the whole of ``text``: in ``existing_ts`` (a message an earlier attempt started) when given and Slack
        still lets it be edited, else as new messages."""
        parts = split_message(text)
        if existing_ts is not None:
            extra = {"metadata": tag} if tag is not None else {}
            try:
                await self._client.chat_update(channel=channel, ts=existing_ts, text=to_mrkdwn(parts[0]), **extra)
            except SlackApiError as exc:
                log.info("the started reply %s cannot be finished (%s); posting it anew", existing_ts, slack_error(exc))
            else:
                for part in parts[1:]:
                    await self._client.chat_postMessage(
                        channel=channel, thread_ts=thread_ts or existing_ts, text=to_mrkdwn(part), unfurl_links=False
                    )
                return
        await self.post(channel=channel, thread_ts=thread_ts, text=text, tag=tag)

    async def _continue_stream(
        self, chunks: AsyncIterator[str], *, channel: str, ts: str, text: str, tag: dict[str, Any] | None
    ) -> str:
        pending, last = "", time.monotonic()
        async for chunk in chunks:
            text += chunk
            pending += chunk
            if len(pending) >= STREAM_FLUSH_CHARS or time.monotonic() - last >= STREAM_FLUSH_S:
                await self._client.chat_appendStream(channel=channel, ts=ts, markdown_text=pending)
                pending, last = "", time.monotonic()
        await self._client.chat_stopStream(channel=channel, ts=ts, markdown_text=pending or None, metadata=tag)
        return text

    async def _post_and_update(
        self,
        chunks: AsyncIterator[str],
        *,
        channel: str,
        thread_ts: str | None,
        text: str,
        on_posted: Callable[[str], Awaitable[None]] | None,
        tag: dict[str, Any] | None,
    ) -> str:
        extra = {"metadata": tag} if tag is not None else {}
        posted = await self._client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=to_mrkdwn(text[:MESSAGE_CHARS]), unfurl_links=False, **extra
        )
        ts, shown, last = str(posted["ts"]), text, time.monotonic()
        if on_posted is not None:
            await on_posted(ts)
        async for chunk in chunks:
            text += chunk
            if time.monotonic() - last >= UPDATE_EVERY_S and len(shown) < MESSAGE_CHARS:
                shown = text
                await self._client.chat_update(channel=channel, ts=ts, text=to_mrkdwn(split_message(text)[0]))
                last = time.monotonic()
        parts = split_message(text)
        if parts[0] != shown:
            await self._client.chat_update(channel=channel, ts=ts, text=to_mrkdwn(parts[0]))
        for part in parts[1:]:
            await self._client.chat_postMessage(
                channel=channel, thread_ts=thread_ts or ts, text=to_mrkdwn(part), unfurl_links=False
            )
        return text
