"""Supportbot's async core: session keys, memory stores and strategies, the model, the turn pipeline.

Adapters hand :class:`IncomingMessage` values to :class:`SupportBot` and post the :class:`Reply` back.
The names below are imported on first use, so ``supportbot --help`` does not wait for LangChain to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.core import SupportBot
    from bot.messages import IncomingMessage, Reply, ReplyKind
    from bot.session import Scope, SessionKey

__version__ = "0.1.0"

__all__ = ["IncomingMessage", "Reply", "ReplyKind", "Scope", "SessionKey", "SupportBot", "__version__"]

_HOMES = {
    "SupportBot": "bot.core",
    "IncomingMessage": "bot.messages",
    "Reply": "bot.messages",
    "ReplyKind": "bot.messages",
    "Scope": "bot.session",
    "SessionKey": "bot.session",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'bot' has no attribute {name!r}")
