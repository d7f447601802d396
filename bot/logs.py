"""Logging setup: human-readable text on a terminal, one JSON object per line in production.

Every line is scrubbed before it is written, whatever logger wrote it and at whatever level: URLs lose their
userinfo and credential query values (httpx logs each request's URL), and the configured secrets' values are
replaced by ``***`` wherever they appear, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.config import HIDDEN, redact_urls

# Fields the core attaches with ``extra=`` that belong in every structured line.
CONTEXT_FIELDS = ("session_id", "platform", "event_id", "kind", "latency_ms")


class Scrubber:
    """Removes secrets from log text: known values first (longest first), then credentials in URLs."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, HIDDEN)
        return redact_urls(text) if "://" in text else text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the context fields and any exception."""

    def __init__(self, scrub: Scrubber | None = None) -> None:
        super().__init__()
        self._scrub = scrub or Scrubber()

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._scrub(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = self._scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            data["exception"] = self._scrub(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message [session_id=…]``."""

    def __init__(self, scrub: Scrubber | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        self._scrub = scrub or Scrubber()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None) is not None)
        return self._scrub(f"{line} [{context}]" if context else line)


class ProblemCounter(logging.Handler):
    """Counts warnings and errors, so a command can say at the end that some were logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def configure_logging(
    *, level: str = "INFO", fmt: str = "text", file: Path | None = None, secrets: Sequence[str] = ()
) -> None:
    """Send Supportbot's logs to stderr, or appended to ``file``, in ``fmt``, with ``secrets`` scrubbed from every
    line; quieten chatty libraries.

    Raises:
        OSError: ``file`` cannot be opened for appending.
    """
    scrub = Scrubber(secrets)
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    handler.setFormatter(JsonFormatter(scrub) if fmt == "json" else TextFormatter(scrub))
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "aiosqlite", "asyncio", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
