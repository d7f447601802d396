"""Supportbot's async core: session keys, memory stores and strategies, the model, the turn pipeline.

Adapters hand :class:`IncomingMessage` values to :class:`SupportBot` and post the :class:`Reply` back.
"""

from bot.core import SupportBot
from bot.messages import IncomingMessage, Reply, ReplyKind
from bot.session import Scope, SessionKey

__version__ = "0.1.0"

__all__ = ["IncomingMessage", "Reply", "ReplyKind", "Scope", "SessionKey", "SupportBot", "__version__"]
