"""How user-derived text is written to a store: as it is, or encrypted with Fernet (optional, at rest).

Three shapes are sealed: JSON documents (a message, a recalled turn, an audit entry), free text (the summary, an
entity's value) and vectors (a recalled turn's embedding, which gives its words away as well as the text does).
Encrypted values carry the ``enc:`` prefix, so a store can hold both while encryption is being switched on, and
several keys can be given (the first encrypts, all decrypt) so a key can be rotated without rewriting history.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.errors import StoreUnavailable
from bot.messages import StoredMessage

ENCRYPTED_PREFIX = "enc:"
# Free text written in clear that happens to start like a sealed value gets this in front, so it is never taken
# for ciphertext (a summary or an entity may quote anything a user typed).
ESCAPE_PREFIX = "raw:"


class MessageCodec:
    """Values as they are: JSON documents and text in clear, vectors as raw bytes."""

    encrypts = False

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
            text = self._decrypt(text.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        return text

    def seal_text(self, text: str) -> str:
        """The stored form of free ``text`` (a summary, an entity's value)."""
        if text.startswith((ENCRYPTED_PREFIX, ESCAPE_PREFIX)):
            return ESCAPE_PREFIX + text
        return text

    def unseal_text(self, raw: str | bytes) -> str:
        """Free text back from :meth:`seal_text`'s output, or as it was stored before this codec sealed text.

        Raises:
            StoreUnavailable: the text is encrypted and no key (or not the right one) is configured.
        """
        text = raw.decode() if isinstance(raw, bytes) else raw
        if text.startswith(ENCRYPTED_PREFIX):
            return self._decrypt(text.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        return text.removeprefix(ESCAPE_PREFIX)

    def seal_vector(self, vector: bytes) -> bytes | str:
        """The stored form of an embedding: the raw bytes, or ``enc:`` and a token (text, never raw bytes)."""
        return vector

    def unseal_vector(self, raw: bytes | str) -> bytes:
        """An embedding back from :meth:`seal_vector`'s output.

        Raises:
            StoreUnavailable: the vector is encrypted and no key (or not the right one) is configured.
        """
        if isinstance(raw, bytes):
            return raw
        if not raw.startswith(ENCRYPTED_PREFIX):
            raise StoreUnavailable("a stored vector is neither raw bytes nor encrypted")
        return self._decrypt(raw.removeprefix(ENCRYPTED_PREFIX).encode())

    def _decrypt(self, token: bytes) -> bytes:
        raise StoreUnavailable("stored messages are encrypted; set SUPPORTBOT_ENCRYPTION_KEY to read them")


class EncryptedCodec(MessageCodec):
    """Fernet-encrypted values; ``keys[0]`` encrypts, every key decrypts (for rotation)."""

    encrypts = True

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except ValueError as exc:
            raise ValueError("SUPPORTBOT_ENCRYPTION_KEY must hold Fernet keys (32 url-safe base64 bytes each)") from exc

    def seal(self, document: str) -> str:
        return self._encrypt(document.encode())

    def seal_text(self, text: str) -> str:
        return self._encrypt(text.encode())

    def seal_vector(self, vector: bytes) -> bytes | str:
        return self._encrypt(vector)

    def _encrypt(self, data: bytes) -> str:
        return ENCRYPTED_PREFIX + self._fernet.encrypt(data).decode()

    def _decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise StoreUnavailable("a stored message cannot be decrypted with the configured keys") from exc
