"""Entity memory: facts about the user's environment (OS, device, VPN client, app and version, location, error
codes, ticket numbers), extracted after each turn and kept per session, the newest fact winning.

Error codes and ticket numbers are lists rather than single facts: a user reports several of them, and a new one
does not make the earlier one wrong, so the last few distinct values are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.errors import ModelError
from bot.memory import Entities

MAX_VALUE_CHARS = 120
LISTED = frozenset({"error_code", "ticket"})  # facts that accumulate instead of replacing each other
LISTED_VALUES = 3  # distinct values kept of a listed fact, newest last


class EnvironmentFacts(BaseModel):
    """What the model may report; every field is optional."""

    os: str | None = Field(default=None, description="operating system and version, e.g. Windows 11, macOS 14")
    device: str | None = Field(default=None, description="the device, e.g. ThinkPad T14 laptop, iPhone 15")
    vpn_client: str | None = Field(
        default=None, description="VPN client and its version if stated, e.g. GlobalProtect 6.2.1, Cisco Secure Client"
    )
    application: str | None = Field(default=None, description="the application the problem is about")
    application_version: str | None = Field(default=None, description="that application's version")
    location: str | None = Field(default=None, description="office, site or location, e.g. Berlin office, home")
    error_code: str | None = Field(default=None, description="error code or exact error message")
    ticket: str | None = Field(default=None, description="ticket or case number")
    asset_tag: str | None = Field(default=None, description="the device's asset tag or inventory number")
    hostname: str | None = Field(default=None, description="the computer's hostname or computer name")
    printer: str | None = Field(default=None, description="the printer's name or queue, e.g. PRN-3F-EAST")
    phone_extension: str | None = Field(default=None, description="the user's phone extension")
    desk: str | None = Field(default=None, description="desk or room number, e.g. 4B-12")


EXTRACT_INSTRUCTIONS = (
    "Extract facts about the user's IT environment from the user's message. Answer with one JSON object with "
    "exactly these keys: " + ", ".join(EnvironmentFacts.model_fields) + ". Use null for anything the message does "
    "not state. Never guess."
)


class EntityExtractor(Protocol):
    """Finds environment facts in what the user wrote."""

    async def extract(self, text: str) -> dict[str, str]:
        """Facts stated in ``text``: entity name -> value.

        Raises:
            ModelError: extraction failed; the turn itself is unaffected.
        """
        ...


def _clean(facts: dict[str, str | None]) -> dict[str, str]:
    return {k: " ".join(v.split())[:MAX_VALUE_CHARS] for k, v in facts.items() if isinstance(v, str) and v.strip()}


class ModelEntityExtractor:
    """Asks the chat model for :class:`EnvironmentFacts` as structured (JSON) output."""

    def __init__(self, model: BaseChatModel) -> None:
        self._runnable = model.with_structured_output(EnvironmentFacts, method="json_mode")

    async def extract(self, text: str) -> dict[str, str]:
        try:
            facts = await self._runnable.ainvoke([SystemMessage(EXTRACT_INSTRUCTIONS), HumanMessage(text)])
        except Exception as exc:
            raise ModelError(f"entity extraction failed: {type(exc).__name__}") from exc
        if not isinstance(facts, EnvironmentFacts):
            raise ModelError("entity extraction returned no facts")
        return _clean(facts.model_dump())


_PATTERNS: dict[str, re.Pattern[str]] = {
    "os": re.compile(
        r"\b(windows\s*(?:1[01]|7|8(?:\.1)?|xp)|mac\s?os(?:\s*x)?(?:\s*\d+(?:\.\d+)*)?|ubuntu(?:\s*\d+(?:\.\d+)?)?|"
        r"ios\s*\d+(?:\.\d+)*|android\s*\d+|chrome\s?os|linux)\b",
        re.IGNORECASE,
    ),
    "vpn_client": re.compile(
        r"\b((?:globalprotect|cisco\s+(?:anyconnect|secure\s+client)|anyconnect|forticlient|wireguard|openvpn)"
        r"(?:\s+(?:version\s+|v)?\d+(?:\.\d+)+)?)\b",
        re.IGNORECASE,
    ),
    "device": re.compile(
        r"\b((?:my\s+)?(?:thinkpad|macbook(?:\s+(?:air|pro))?|surface(?:\s+pro)?|dell\s+\w+|iphone(?:\s*\d+)?|"
        r"ipad|pixel\s*\d*|galaxy\s+\w+))\b",
        re.IGNORECASE,
    ),
    "error_code": re.compile(r"\b(0x[0-9a-f]{4,8}|error\s*(?:code\s*)?[:#]?\s*\d{3,6})\b", re.IGNORECASE),
    "ticket": re.compile(r"\b((?:INC|REQ|RITM|CS|SR)\d{4,}|ticket\s*#?\s*\d{3,})\b", re.IGNORECASE),
    "location": re.compile(r"\b(?:in|at|from)\s+the\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)?\s+office)\b"),
    # Identifiers: a label, then a token that has a digit in it (tags, names and numbers IT hands out do).
    "asset_tag": re.compile(
        r"\basset(?:\s+(?:tag|number|id|no\.?))?\s*(?:is|:|#|=)?\s*((?=[\w-]*\d)[A-Z0-9][\w-]{2,})\b", re.IGNORECASE
    ),
    "hostname": re.compile(
        r"\b(?:hostname|host\s+name|computer\s+name|machine\s+name|device\s+name)\s*(?:is|:|=)?\s*"
        r"((?=[\w.-]*\d)[A-Za-z][\w.-]{2,}\w)",
        re.IGNORECASE,
    ),
    "printer": re.compile(r"\bprinter\s*(?:is|:|called|named|queue)?\s*((?=[\w-]*\d)[A-Z][\w-]{2,})\b", re.IGNORECASE),
    "phone_extension": re.compile(r"\b(?:extension|ext\.?)\s*(?:is|:|#|number)?\s*(\d{3,6})\b", re.IGNORECASE),
    "desk": re.compile(r"\bdesk\s*(?:number|no\.?|is|:|#)?\s*((?=[\w-]*\d)[A-Z0-9][\w-]{0,9})\b", re.IGNORECASE),
}


class RuleEntityExtractor:
    """The offline extractor: patterns for the facts helpdesk users mention most."""

    async def extract(self, text: str) -> dict[str, str]:
        found: dict[str, str | None] = {}
        for name, pattern in _PATTERNS.items():
            match = pattern.search(text)
            if match:
                found[name] = match.group(1).removeprefix("my ").removeprefix("My ")
        return _clean(found)


def merge_listed(name: str, known: str | None, new: str) -> str:
    """The value to store for ``name``: ``new`` itself, or for a listed fact the last few distinct values."""
    if name not in LISTED or not known:
        return new
    values = [v for v in known.split("; ") if v and v != new] + [new]
    return "; ".join(values[-LISTED_VALUES:])


def entities_block(entities: Entities) -> str:
    """The facts as the system prompt shows them, oldest first so the newest read last."""
    lines = [
        f"- {name.replace('_', ' ')}: {e.value}" for name, e in sorted(entities.items(), key=lambda i: i[1].updated)
    ]
    return "Known about the user's environment (newer facts replace older ones):\n" + "\n".join(lines)


def describe(entities: Entities) -> Sequence[str]:
    """One line per fact, for recaps."""
    return [f"{name.replace('_', ' ')}: {e.value}" for name, e in sorted(entities.items())]
