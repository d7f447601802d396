"""Pure text helpers: strip the bot's mention, name a thread, split a reply at Discord's message limit, quote text
inertly."""

from __future__ import annotations

import re

from adapters.inert import defang

MESSAGE_LIMIT = 2_000  # characters Discord accepts in one message
THREAD_NAME_CHARS = 80  # Discord allows 100; shorter names stay readable in the channel list
MIN_SPLIT_LIMIT = 100  # below this a reopened code fence could leave no room for content

FENCE = "```"
_CLOSE = "\n" + FENCE  # appended to a part that ends inside a code block
_MAX_LANG_CHARS = 32  # a fence's language tag carried to the next part; longer tags are not languages
_MAX_REOPEN_CHARS = len(FENCE) + _MAX_LANG_CHARS + 1  # "```lang\n" at the start of a continued code block

# Cut ranks, best first. A cut is a line start where one part ends and the next begins; only when one line is
# longer than a part does the split fall back to its last whitespace, then to the limit itself.
_BLOCK = 0  # after a blank line, before or after a code block: a paragraph boundary
_LINE = 1  # any other line start outside a code block
_FENCED_LINE = 2  # a line start inside a code block: the part closes the fence, the next reopens it


# Every character Discord's markdown gives a meaning to: emphasis, code, spoilers, quotes, headings and list items,
# masked links, and the <…> of mentions, channels, commands and timestamps. A backslash shows each as itself.
_MARKUP = re.compile(r"([\\*_~`|>#\[\]()<@])")
_LINE_MARKUP = re.compile(r"^([ \t]*)([-+]|\d+\.)", re.MULTILINE)  # list items, "-#" subtext, "1." lists


def to_inert_text(text: str) -> str:
    """``text`` as plain characters in Discord: all markdown escaped, ``@`` too (no ``@everyone``, no ``<@id>``), and
    URLs and domain names defanged so Discord links and previews none."""
    escaped = _MARKUP.sub(r"\\\1", defang(text))
    return _LINE_MARKUP.sub(
        lambda m: m.group(1) + (m.group(2)[:-1] + "\\." if m.group(2)[-1] == "." else "\\" + m.group(2)), escaped
    )


def strip_mentions(text: str, *, user_id: int, role_id: int | None = None) -> str:
    """``text`` without the bot's user mention (``<@id>``, ``<@!id>``) or its managed role's (``<@&id>``)."""
    pattern = rf"<@!?{user_id}>" if role_id is None else rf"<@!?{user_id}>|<@&{role_id}>"
    # Take the spaces after a mention too, so "hi <@1> there" reads "hi there".
    return re.sub(rf"(?:{pattern})[ \t]*", "", text).strip()


def thread_name(text: str, *, fallback: str) -> str:
    """A thread title from the first non-empty line of ``text``, cut to ``THREAD_NAME_CHARS``."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    name = " ".join(first.split())
    if not name:
        return fallback[:THREAD_NAME_CHARS]
    if len(name) > THREAD_NAME_CHARS:
        name = name[: THREAD_NAME_CHARS - 1].rstrip() + "…"
    return name


def _fence_line(line: str) -> tuple[bool, str]:
    """Whether ``line`` opens or closes a code block, and its language tag.

    A line like ```` ```x = 1``` ```` is a whole code block on one line and changes nothing.
    """
    stripped = line.strip()
    if not stripped.startswith(FENCE) or FENCE in stripped[len(FENCE) :]:
        return False, ""
    tag = stripped[len(FENCE) :].split(maxsplit=1)
    return True, tag[0][:_MAX_LANG_CHARS] if tag else ""


def _best_cut(text: str, *, window: int, floor: int) -> tuple[int, str | None]:
    """Where the next part of ``text`` should end, and the code fence open there (``None`` outside one).

    Looks only at the first ``window`` characters and never cuts before ``floor``, so the choice depends only on
    the text's beginning: a reply streamed chunk by chunk keeps its earlier parts as more text arrives.
    """
    best: dict[int, tuple[int, str | None]] = {}
    fence: str | None = None  # the line that reopens the code block we are in
    boundary_before = False  # the previous line was blank or closed a code block
    pos = line_start = 0
    # One character more than the window, so a line starting exactly at the window is a candidate too.
    for line in text[: window + 1].splitlines(keepends=True):
        is_fence, lang = _fence_line(line)
        if pos >= floor:
            if fence is None:
                best[_BLOCK if boundary_before or is_fence else _LINE] = (pos, None)
            else:  # right before the closing fence the block ends: split_message moves that fence into the part
                best[_BLOCK if is_fence else _FENCED_LINE] = (pos, fence)
        line_start = pos
        if is_fence:
            boundary_before = fence is not None
            fence = FENCE + lang if fence is None else None
        else:
            boundary_before = fence is None and not line.strip()
        pos += len(line)
    for rank in (_BLOCK, _LINE, _FENCED_LINE):
        if rank in best:
            return best[rank]
    # One long line runs past the window: cut it after its last whitespace, else at the window itself. The cut lies
    # well past the line's start, so the line's own fence marker (if any) is on the left of it: ``fence`` applies.
    start = max(floor, line_start)
    last_space = max(text.rfind(" ", start, window), text.rfind("\t", start, window))
    return (last_space + 1 if last_space >= 0 else window), fence


def split_message(text: str, *, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into messages of at most ``limit`` characters.

    Cuts at paragraph or code-block boundaries when it can, then at line starts, then at whitespace. A part that
    has to end inside a code block closes it with ```` ``` ````, and the next part reopens it with the same
    ```` ```lang ````, so every part renders on its own. Blank parts are dropped.

    Raises:
        ValueError: ``limit`` is below ``MIN_SPLIT_LIMIT``.
    """
    if limit < MIN_SPLIT_LIMIT:
        raise ValueError(f"limit must be at least {MIN_SPLIT_LIMIT}")
    window = limit - len(_CLOSE)  # room for the fence a cut inside a code block adds
    # Never cut before the longest reopening fence line, so every part carries content and the rest shrinks.
    floor = max(window // 3, _MAX_REOPEN_CHARS + 1)
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut, fence = _best_cut(rest, window=window, floor=floor)
        head, rest = rest[:cut].rstrip(), rest[cut:]
        if fence is None:
            rest = rest.lstrip("\n")
        else:
            head += _CLOSE
            closing, _, after = rest.partition("\n")
            # The block's own closing fence follows: the fence just added replaces it. Otherwise reopen the block.
            rest = after.lstrip("\n") if closing.strip() == FENCE else f"{fence}\n{rest}"
        if head:
            parts.append(head)
    if rest:
        parts.append(rest)
    return parts
