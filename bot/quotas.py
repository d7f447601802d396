"""Limits on what the tools do outside the chat: tickets and hand-overs per user per day and per session, and at most
one open hand-over per session.

A model that obeys instructions in the user's text will call ``create_ticket`` or ``escalate_to_human`` as often
as it is told to. The per-session counts and the open hand-over are read from the session's audit log, so every
process sees them; the per-user daily counts are kept in this process (see :mod:`bot.ratelimit`). A refusal is a
polite message for the model to pass on, and the call's audit entry records it (outcome ``refused``).

A hand-over stays open until an operator resolves it (``supportbot sessions resolve ID``, which writes a
:data:`RESOLVE_TOOL` entry to the audit log) or until ``escalation_open_for`` has passed.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.memory.base import AuditEntry
from bot.ratelimit import DAY_S, Quotas, RateLimiter

CREATE_TICKET = "create_ticket"
ESCALATE_TO_HUMAN = "escalate_to_human"
RESOLVE_TOOL = "resolve_escalation"  # the audit entry an operator's "resolved" leaves
DONE = ("ok",)
POSTED_KEPT = 10_000  # sessions whose hand-over this process remembers; older ones are found in the audit log


@dataclass(frozen=True, slots=True)
class OpenEscalation:
    """A hand-over already posted for the session and not yet resolved."""

    since: float  # epoch seconds
    reference: str  # what the escalation returned (a permalink), as its audit entry recorded it


def _done(entries: Sequence[AuditEntry], tool: str) -> list[AuditEntry]:
    return [e for e in entries if e.tool == tool and e.outcome in DONE]


class SideEffectQuotas:
    """Decides whether a ticket or a hand-over may go out, and remembers the ones that did."""

    def __init__(self, quotas: Quotas, *, clock: Callable[[], float] = time.time) -> None:
        self._quotas = quotas
        self._clock = clock
        self._tickets = RateLimiter(messages=quotas.tickets_per_day, period=DAY_S, clock=clock)
        self._escalations = RateLimiter(messages=quotas.escalations_per_day, period=DAY_S, clock=clock)
        # Hand-overs posted by this process, by session: the audit entry may not have been written (store down).
        self._posted: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def ticket_refusal(self, sender: str, audit: Sequence[AuditEntry]) -> str | None:
        """Why a ticket may not be filed now, or ``None`` when it may."""
        per_session = self._quotas.tickets_per_session
        filed = len({e.event_id for e in _done(audit, CREATE_TICKET)})
        if per_session and filed >= per_session:
            return (
                f"This conversation has already filed {filed} ticket(s), the most one conversation may file. "
                "Do not try again. Tell the user politely that the helpdesk has the earlier ticket(s) and that "
                "they can add to them or contact the helpdesk directly."
            )
        if self._tickets.remaining(sender) == 0:
            return (
                f"This user has filed {self._quotas.tickets_per_day} ticket(s) in the last 24 hours, the most "
                "allowed. Do not try again. Tell the user politely that no further ticket can be filed from the chat "
                "today and that they can contact the helpdesk directly for anything urgent."
            )
        return None

    def ticket_filed(self, sender: str) -> None:
        """Count a ticket that went out."""
        self._tickets.add(sender)

    def open_escalation(self, session_id: str, audit: Sequence[AuditEntry]) -> OpenEscalation | None:
        """The session's hand-over that is still open, if there is one."""
        posted = [(e.time, _reference(e.detail)) for e in _done(audit, ESCALATE_TO_HUMAN)]
        if session_id in self._posted:
            posted.append(self._posted[session_id])
        if not posted:
            return None
        since, reference = max(posted)
        resolved = any(e.time >= since for e in _done(audit, RESOLVE_TOOL))
        if resolved or self._clock() - since >= self._quotas.escalation_open_for:
            return None
        return OpenEscalation(since, reference)

    def escalation_refusal(self, sender: str, audit: Sequence[AuditEntry]) -> str | None:
        """Why a hand-over may not be posted now (beyond an open one), or ``None`` when it may."""
        per_session = self._quotas.escalations_per_session
        posted = len(_done(audit, ESCALATE_TO_HUMAN))
        if per_session and posted >= per_session:
            return (
                f"This conversation was already handed to a person {posted} time(s), the most allowed. Do not try "
                "again. Tell the user politely to contact the IT helpdesk directly."
            )
        if self._escalations.remaining(sender) == 0:
            return (
                f"This user has asked for a person {self._quotas.escalations_per_day} time(s) in the last 24 hours, "
                "the most allowed. Do not try again. Tell the user politely to contact the IT helpdesk directly."
            )
        return None

    def escalated(self, session_id: str, sender: str, reference: str) -> None:
        """Remember a hand-over that went out."""
        self._escalations.add(sender)
        self._posted[session_id] = (self._clock(), reference)
        self._posted.move_to_end(session_id)
        while len(self._posted) > POSTED_KEPT:
            self._posted.popitem(last=False)


def escalation_detail(channel: str, reference: str) -> str:
    """The audit detail of a posted hand-over: JSON, so the next call, in any process, can read it back."""
    return json.dumps({"escalated_to": channel, "post": reference[:300]}, ensure_ascii=False)


def _reference(detail: str) -> str:
    try:
        data = json.loads(detail)
    except ValueError:
        return "an earlier post"
    post = data.get("post") if isinstance(data, dict) else None
    return post if isinstance(post, str) and post else "an earlier post"
