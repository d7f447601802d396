"""Text that no chat platform will turn into a link: what hand-over posts quote of the user's words.

A hand-over is posted under the bot's name to the people who act on it, so a user (or a model following the user's
instructions) must not be able to make it show a disguised link, a button-like bold "Security team" line or a
mention. Each adapter escapes its own markup; :func:`defang` breaks what the platforms link by themselves: URLs
(``https://x`` becomes ``hxxps[:]//x``) and bare domain names (``okta-admin.evil.example`` becomes
``okta-admin[.]evil[.]example``), the way security teams quote indicators. A person can still read, and copy, them.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://")
# A host name with a letter TLD (also inside e-mail addresses), but not versions such as 6.2.1 or file names
# such as setup.exe, which no platform links.
_DOMAIN = re.compile(
    r"\b(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,24})\b(?!\.[A-Za-z0-9])",
)
_FILE_SUFFIXES = frozenset(
    {"exe", "msi", "dmg", "pkg", "zip", "log", "txt", "pdf", "docx", "xlsx", "pptx", "csv", "json", "ps1", "sh", "py"}
)


def _defang_domain(match: re.Match[str]) -> str:
    name = match.group()
    if name.rsplit(".", 1)[-1].lower() in _FILE_SUFFIXES:
        return name
    return name.replace(".", "[.]")


def defang(text: str) -> str:
    """``text`` with URL schemes and domain names broken so that no platform links them."""
    text = _SCHEME.sub(lambda m: m.group(1).replace("t", "x") + "[:]//", text)
    return _DOMAIN.sub(_defang_domain, text)
