"""How often the offline responder opens the right help-article section: top-1 section accuracy.

Run ``python bench/offline_eval.py`` (part of ``make bench``); ``--json PATH`` saves the result and ``--verbose``
lists every question. See ``docs/benchmarks.md`` for the figures.

Each question below is how people write to a helpdesk (short, informal, in their own words rather than the
article's), paired with the one section of the sample knowledge base (``bot/sample_kb/``) that answers it. A
question counts as answered when the section the responder shows first is that section. The responder is the real
``OfflineResponder``, given the question as the first message of a conversation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bot.kb import SAMPLE_KB, KnowledgeBase
from bot.offline import OfflineResponder


@dataclass(frozen=True, slots=True)
class Case:
    question: str
    article: str  # file name without .md
    section: str  # the ## heading that answers it


CASES = (
    # printers
    Case("My printer is jammed", "printers", "Paper jams and toner"),
    Case("paper stuck in the printer on floor 2", "printers", "Paper jams and toner"),
    Case("The printer is out of toner", "printers", "Paper jams and toner"),
    Case("the printer says it is offline", "printers", "Printer shows offline"),
    Case("How do I add the printer on the 3rd floor to my laptop?", "printers", "Add a network printer"),
    Case("Documents are stuck in the print queue and nothing comes out", "printers", "Print queue stuck"),
    Case("Where do I release my print jobs with my badge?", "printers", "Secure or follow-me printing"),
    Case("printouts come out garbled and the wrong size", "printers", "Drivers"),
    # VPN
    Case("My VPN is not working", "vpn", "Check your internet connection first"),
    Case("VPN keeps dropping every few minutes", "vpn", "VPN keeps disconnecting"),
    Case("I'm connected to the VPN but intranet sites won't load", "vpn", "Connected but cannot reach internal sites"),
    Case("GlobalProtect says authentication failed", "vpn", "Credentials and MFA"),
    Case("How do I export logs from Cisco AnyConnect?", "vpn", "Collect logs"),
    Case("I'm in a hotel and the VPN won't connect", "vpn", "Check your internet connection first"),
    # Wi-Fi
    Case("Which wifi network should my work laptop join?", "wifi", "Pick the right network"),
    Case("wifi keeps rejecting my password since I changed it", "wifi", "Forget and rejoin the network"),
    Case("connected to the wifi but no websites load", "wifi", "Renew your IP address and flush DNS"),
    Case("should I use 5 GHz or 2.4 GHz at home?", "wifi", "2.4 GHz versus 5 GHz"),
    Case("How do I update my wireless adapter driver?", "wifi", "Update the Wi-Fi driver"),
    Case("the wireless keeps disconnecting, any quick fixes?", "wifi", "Quick fixes"),
    # email and Outlook
    Case("Outlook says disconnected", "email-outlook", 'Outlook shows "Disconnected" or "Trying to connect"'),
    Case("Outlook hangs on loading profile", "email-outlook", 'Outlook will not open or is stuck on "Loading profile"'),
    Case("Outlook keeps asking for my password", "email-outlook", "Password prompt keeps coming back"),
    Case("my mailbox is full and I can't send emails", "email-outlook", "Mailbox full"),
    Case("How do I get my work email on my iPhone?", "email-outlook", "Email on your phone"),
    Case("I can't get into my email at all", "email-outlook", "First, check webmail"),
    Case("how do I recreate my Outlook profile?", "email-outlook", "Repair or recreate the Outlook profile"),
    # MFA
    Case("I got a new phone, how do I move my authenticator?", "mfa", "Getting a new phone"),
    Case("I lost my phone and can't approve sign-ins", "mfa", "Lost or stolen phone"),
    Case("my authenticator codes are rejected", "mfa", "Authenticator codes not accepted"),
    Case("I'm not getting the push notification to approve my login", "mfa", "Push notification not arriving"),
    Case("I got an MFA request I didn't start", "mfa", "Never approve a push you did not start"),
    Case("where do I get backup codes for two-factor?", "mfa", "Backup codes and other methods"),
    # passwords
    Case("I forgot my password", "password-reset", "Reset your password with self-service"),
    Case("My account is locked out", "password-reset", "Locked account"),
    Case("it says my password has expired", "password-reset", "Expired password"),
    Case("what are the rules for a new password?", "password-reset", "Password rules"),
    Case(
        "I keep getting locked out since I changed my password", "password-reset", "Update saved passwords everywhere"
    ),
    # slow laptop
    Case("My laptop is really slow", "slow-laptop", "Restart first"),
    Case("How do I see what is using all my CPU?", "slow-laptop", "Find what is using resources"),
    Case("my disk is almost full", "slow-laptop", "Free up disk space"),
    Case("too many programs launch when I log in and it takes ages", "slow-laptop", "Reduce startup apps"),
    Case("Chrome is sluggish with lots of tabs open", "slow-laptop", "Browser tabs and extensions"),
    Case("I think my computer has a virus", "slow-laptop", "Scan for malware"),
    Case("the laptop gets slow when it's on battery", "slow-laptop", "Battery and power mode"),
    # software
    Case("How do I install Zoom?", "software-install", "Install from the software catalog"),
    Case("the installer asks for an administrator password", "software-install", "Admin rights"),
    Case("the app I need isn't in Company Portal", "software-install", "Request software that is not in the catalog"),
    Case("Acrobat says my trial expired", "software-install", "Licensing"),
    Case("how do I update my apps?", "software-install", "Updates"),
)

# Written after the search was tuned on CASES, and never tuned on: how well the tuning carries to new wording.
HELD_OUT = (
    Case("the office printer won't print anything, jobs just sit there", "printers", "Print queue stuck"),
    Case("how do I connect to a printer at a new office", "printers", "Add a network printer"),
    Case("printer has a red light and says paper jam in tray 2", "printers", "Paper jams and toner"),
    Case("forticlient won't connect after I changed my password", "vpn", "Credentials and MFA"),
    Case("can reach google but not the intranet over vpn", "vpn", "Connected but cannot reach internal sites"),
    Case("the vpn disconnects whenever my laptop goes to sleep", "vpn", "VPN keeps disconnecting"),
    Case("my phone can't join the guest network", "wifi", "Pick the right network"),
    Case("I get a certificate warning when joining the corporate wifi", "wifi", "Pick the right network"),
    Case("outlook won't start", "email-outlook", 'Outlook will not open or is stuck on "Loading profile"'),
    Case("how much space is left in my mailbox", "email-outlook", "Mailbox full"),
    Case(
        "Outlook is in offline mode and not receiving mail",
        "email-outlook",
        'Outlook shows "Disconnected" or "Trying to connect"',
    ),
    Case("the codes from Google Authenticator don't work", "mfa", "Authenticator codes not accepted"),
    Case("my phone was stolen", "mfa", "Lost or stolen phone"),
    Case("someone called asking for my MFA code", "mfa", "Never approve a push you did not start"),
    Case("how do I reset my password", "password-reset", "Reset your password with self-service"),
    Case("my password expires tomorrow, how do I change it", "password-reset", "Expired password"),
    Case("I need admin rights to install Python", "software-install", "Admin rights"),
    Case("my computer freezes all the time", "slow-laptop", "Restart first"),
    Case("task manager shows 100% disk", "slow-laptop", "Find what is using resources"),
    Case(
        "my laptop is 6 years old and very slow, can I get a new one?",
        "slow-laptop",
        "When hardware replacement is warranted",
    ),
)

_SHOWN = re.compile(r"From the help article \*\*(?P<title>.+?)\*\*(?: — (?P<heading>.+?))?:\n")


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    shown: tuple[str, str] | None  # (article, section) the reply opened with, None when it found nothing

    @property
    def hit(self) -> bool:
        return self.shown == (self.case.article, self.case.section)


def shown_section(kb: KnowledgeBase, reply: str) -> tuple[str, str] | None:
    """The (article file, section) a reply shows, read from its "From the help article" line."""
    match = _SHOWN.search(reply)
    if match is None:
        return None
    title = match["title"]
    slug = next(s.slug for s in kb.sections if s.article == title)
    return slug, match["heading"] or title


def evaluate(cases: tuple[Case, ...] = CASES, kb: KnowledgeBase | None = None) -> list[Outcome]:
    """Ask every question as the first message of a conversation; what the responder showed for each."""
    kb = kb or KnowledgeBase.from_directory(SAMPLE_KB)
    responder = OfflineResponder(kb=kb, top_k=2)
    system = SystemMessage("You are Supportbot.")
    return [
        Outcome(case, shown_section(kb, responder.compose([system, HumanMessage(case.question)]))) for case in cases
    ]


def report(name: str, outcomes: list[Outcome], *, verbose: bool) -> dict[str, object]:
    """Print the misses (every question with ``verbose``) and the accuracy; the same as a JSON-ready dict."""
    hits = sum(o.hit for o in outcomes)
    for o in outcomes:
        if verbose or not o.hit:
            shown = " / ".join(o.shown) if o.shown else "nothing"
            print(f"{'ok  ' if o.hit else 'MISS'} {o.case.question!r}: showed {shown}; wanted {o.case.section}")
    print(f"{name}: top-1 section accuracy {hits}/{len(outcomes)} = {hits / len(outcomes):.3f}")
    return {
        "questions": len(outcomes),
        "top1_hits": hits,
        "top1_accuracy": round(hits / len(outcomes), 4),
        "misses": [
            {"question": o.case.question, "wanted": o.case.section, "shown": list(o.shown or ())}
            for o in outcomes
            if not o.hit
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--verbose", action="store_true", help="list every question, not only the misses")
    args = parser.parse_args()
    result = {
        "questions": report("questions", evaluate(CASES), verbose=args.verbose),
        "held_out": report("held-out questions", evaluate(HELD_OUT), verbose=args.verbose),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
