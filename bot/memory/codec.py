"""How message bodies are written to a store: plain JSON, or JSON encrypted with Fernet (optional, at rest).

Encrypted bodies carry the ``enc:`` prefix, so a store can hold both while encryption is being switched on, and
several keys can be given (the first encrypts, all decrypt) so a key can be rotated without rewriting history.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.errors import StoreUnavailable
from bot.messages import StoredMessage

ENCRYPTED_PREFIX = "enc:"


class MessageCodec:
    """Plain JSON bodies."""

    def encode(self, message: StoredMessage) -> str:
        """The stored form of ``message``."""
        return self.seal(message.to_json())

    def decode(self, raw: str | bytes) -> StoredMessage:
        """A message back from its stored form.

        Raises:
            StoreUnavailable: the body is encrypted and no key (or not the right one) is configured.
        """
        return StoredMessage.from_json(self.unseal(raw))

    def seal(self, document: str) -> str:
        """The stored form of a JSON ``document`` that carries what a user said (a message, a recalled turn)."""
        return document

    def unseal(self, raw: str | bytes) -> str:
        """The JSON document back from :meth:`seal`'s output (or from a plain one, written before encryption).

        Raises:
            StoreUnavailable: the body is encrypted and no key (or not the right one) is configured.
        """
        text = raw.decode() if isinstance(raw, bytes) else raw
        if text.startswith(ENCRYPTED_PREFIX):
            text = self._decrypt(text.removeprefix(ENCRYPTED_PREFIX))
        return text

    def _decrypt(self, token: str) -> str:
        raise StoreUnavailable("stored messages are encrypted; set SUPPORTBOT_ENCRYPTION_KEY to read them")


class EncryptedCodec(MessageCodec):
    """Fernet-encrypted bodies; ``keys[0]`` encrypts, every key decrypts (for rotation)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except ValueError as exc:
            raise ValueError("SUPPORTBOT_ENCRYPTION_KEY must hold Fernet keys (32 url-safe base64 bytes each)") from exc

    def seal(self, document: str) -> str:
        return ENCRYPTED_PREFIX + self._fernet.encrypt(document.encode()).decode()

    def _decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise StoreUnavailable("a stored message cannot be decrypted with the configured keys") from exc
