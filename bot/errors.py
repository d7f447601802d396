"""Supportbot's error tree. Third-party errors are translated at the boundary with ``raise ... from exc``.

::

    SupportbotError
    ├── ConfigError              the configuration cannot be used
    ├── InvalidMessage           an incoming message cannot be turned into a turn (bad ids)
    ├── StoreError
    │   ├── StoreUnavailable     the store cannot be reached or answered with an error
    │   ├── LeaseLost            the session's lease expired and another holder took it (fencing)
    │   └── SessionErased        the session was deleted while a turn ran; the turn is not saved
    ├── SessionBusy              the session stayed leased by another process past the wait limit
    ├── ShuttingDown             the bot is closing and takes no new messages
    ├── ModelError               the chat model failed
    │   ├── ModelTimeout
    │   ├── ModelRateLimited
    │   └── ModelAuthError
    └── ToolError                a tool the model called could not do its work
        ├── TicketFailed
        └── EscalationFailed
"""

from __future__ import annotations


class SupportbotError(Exception):
    """Base of every error Supportbot raises on purpose."""


class ConfigError(SupportbotError):
    """The configuration is invalid; the message names the key and the problem."""


class InvalidMessage(SupportbotError):
    """An incoming message has ids that cannot form a session key."""


class StoreError(SupportbotError):
    """A session store operation failed."""


class StoreUnavailable(StoreError):
    """The store is down, unreachable or answered with an error."""


class LeaseLost(StoreError):
    """The turn's lease was no longer held when it tried to save: a newer holder fenced it out."""


class SessionErased(StoreError):
    """The session was deleted (erased, reset) while the turn ran: its message and answer must not be saved."""


class SessionBusy(SupportbotError):
    """Another process held the session's lease for longer than the turn was willing to wait."""


class ShuttingDown(SupportbotError):
    """The bot is closing: in-flight turns finish, new ones are refused."""


class ModelError(SupportbotError):
    """The chat model failed to answer."""


class ModelTimeout(ModelError):
    """The chat model did not answer in time."""


class ModelRateLimited(ModelError):
    """The chat model's provider refused the call for now (HTTP 429)."""


class ModelAuthError(ModelError):
    """The chat model's provider rejected the credentials."""


class ToolError(SupportbotError):
    """A tool the model called could not do its work; the model is told, the turn goes on."""


class TicketFailed(ToolError):
    """The ticket webhook refused the ticket or could not be reached after the retries."""


class EscalationFailed(ToolError):
    """The platform refused the escalation post or could not be reached."""
