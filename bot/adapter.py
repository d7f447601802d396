"""The boundary an adapter implements. Adapters translate platform payloads; they decide nothing about memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

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
