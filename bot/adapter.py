"""The boundary an adapter implements. Adapters translate platform payloads; they decide nothing about memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import SupportBot
    from bot.inbox import Attempt, Inbox


class Adapter(Protocol):
    """One platform surface (web, Slack, Discord), owned by the runner."""

    name: ClassVar[str]

    def __init__(self, *, settings: Settings) -> None: ...

    @classmethod
    def enabled(cls, settings: Settings) -> tuple[bool, str]:
        """Whether the configuration turns this surface on, and a line saying so (or what would turn it on)."""
        ...

    async def start(self, bot: SupportBot, *, inbox: Inbox | None = None, intake: bool = True) -> None:
        """Connect and start serving; return once running.

        Args:
            bot: the turn pipeline.
            inbox: where accepted messages are recorded before the platform is acknowledged; the runner's worker
                hands them back to :meth:`Answers.answer`. Without one, an adapter that records messages keeps an
                in-process inbox and worker of its own.
            intake: take messages from the platform (the ``web`` and ``all`` roles); without it only answer what
                the inbox holds (the ``worker`` role).
        """
        ...

    async def aclose(self) -> None:
        """Stop taking messages and disconnect. Idempotent."""
        ...


# (HTTP method, path, handler taking the server's request object)
HttpRoute = tuple[str, str, Callable[[Any], Awaitable[Any]]]


@runtime_checkable
class ServesHttp(Protocol):
    """An adapter that receives webhooks on the shared HTTP server (Slack's Events API)."""

    def http_routes(self) -> Sequence[HttpRoute]:
        """Routes to mount on the web server before it starts."""
        ...


@runtime_checkable
class HostsHttp(Protocol):
    """The adapter that runs the shared HTTP server."""

    def add_routes(self, routes: Sequence[HttpRoute]) -> None:
        """Mount other adapters' routes; called before :meth:`Adapter.start`."""
        ...


@runtime_checkable
class Answers(Protocol):
    """An adapter that answers the messages it recorded in the inbox (Slack, Discord)."""

    name: ClassVar[str]

    async def answer(self, attempt: Attempt) -> None:
        """Answer one inbox entry: run its turn and post the reply where it belongs.

        Returns once the reply is posted (or the entry needs none); the entry is then done. Raises when the entry
        should be tried again later (the store or the platform could not be reached).
        """
        ...


@runtime_checkable
class Drains(Protocol):
    """An adapter that can stop taking new messages while the work it already took finishes."""

    async def drain(self) -> None:
        """Stop accepting new deliveries (close listeners, disconnect); keep in-flight replies going."""
        ...


@runtime_checkable
class Escalates(Protocol):
    """An adapter that can post a session's hand-over to a person, on its own platform, for ``escalate_to_human``."""

    @property
    def escalation_channel(self) -> str | None:
        """Where escalations go (a channel id), or ``None`` when none is configured."""
        ...

    async def post_escalation(self, text: str) -> str:
        """Post ``text`` (plain markdown) to the escalation channel through the adapter's send path.

        Returns a reference to the posted message (a permalink or ``channel/message`` id).

        Raises:
            EscalationFailed: the platform refused the post or could not be reached.
        """
        ...
