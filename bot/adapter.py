"""The boundary an adapter implements. Adapters translate platform payloads; they decide nothing about memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import SupportBot


class Adapter(Protocol):
    """One platform surface (web, Slack, Discord), owned by the runner."""

    name: ClassVar[str]

    def __init__(self, *, settings: Settings) -> None: ...

    @classmethod
    def enabled(cls, settings: Settings) -> tuple[bool, str]:
        """Whether the configuration turns this surface on, and a line saying so (or what would turn it on)."""
        ...

    async def start(self, bot: SupportBot) -> None:
        """Connect and start serving; return once running."""
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
