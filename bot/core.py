"""The turn pipeline: one user message in, one reply out, remembered in its own session."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable

from bot.constants import EMBEDDING_WAIT_S, LEASE_RETRY_MAX_S, LEASE_RETRY_MIN_S, LEASE_WAIT_S, MAX_MESSAGE_CHARS
from bot.entities import EntityExtractor, entities_block
from bot.errors import (
    InvalidMessage,
    LeaseLost,
    ModelError,
    SessionBusy,
    SessionErased,
    ShuttingDown,
    StoreUnavailable,
)
from bot.kb import KnowledgeBase
from bot.memory.base import ClaimStatus, Lease, SessionContext, SessionStore, TurnEmbedding, TurnStart
from bot.messages import IncomingMessage, Reply, ReplyKind, StoredMessage, clean_text
from bot.metrics import TurnMetrics
from bot.model import AsyncClosable, translate_model_error
from bot.ratelimit import RateLimiter
from bot.recall import Recall, RecalledTurn, Vector
from bot.session import Scope, SessionKey, session_key_for
from bot.strategies import MemoryStrategy, Snippet, WindowStrategy, build_prompt
from bot.summary import Summarizer
from bot.tools import Toolbox, TurnFacts
from bot.upkeep import Upkeep

log = logging.getLogger("supportbot.core")

EMPTY_MESSAGE_REPLY = "Your message was empty. What can I help you with?"
INVALID_MESSAGE_REPLY = "Sorry, I could not tell which conversation that message belongs to, so I did not store it."
MODEL_FAILED_REPLY = (
    "Sorry, I could not get an answer just now. I have kept your message; please try again in a minute."
)
MEMORY_UNAVAILABLE_REPLY = (
    "Sorry, my conversation memory is temporarily unavailable, so I could not take your message. "
    "Please send it again in a minute."
)
SESSION_BUSY_REPLY = "Sorry, I am still working on an earlier message in this conversation. Please try again shortly."
RATE_LIMITED_REPLY = (
    "You are sending messages faster than I can answer them. Please wait a minute, then send your question again."
)
INTERNAL_ERROR_REPLY = "Sorry, something went wrong on my side while answering. Please try again."
ERASED_REPLY = (
    "This conversation was erased while I was answering, so nothing of it was kept, this message included. "
    "Send it again to start a new conversation."
)
STATELESS_NOTE = (
    "\n\n_(My conversation memory is temporarily unavailable, so I answered without our earlier messages "
    "and will not remember this one.)_"
)
STREAM_BROKEN_NOTE = "\n\n_(The answer was cut off because the model stopped responding. Please ask again.)_"

Sink = Callable[[str], Awaitable[None]]
ToolModel = Runnable[LanguageModelInput, AIMessage]


@dataclass(frozen=True, slots=True)
class CoreOptions:
    """The knobs of the turn pipeline (see ``config.yaml``)."""

    system_prompt: str
    scope: Scope = Scope.THREAD_USER
    max_message_chars: int = MAX_MESSAGE_CHARS
    lease_wait: float = LEASE_WAIT_S
    answer_without_memory: bool = False  # when the store is down: answer from the new message alone, say so
    rate_limit_messages: int = 0  # per user per rate_limit_period; 0 = no limit
    rate_limit_period: float = 60.0
    max_prompt_tokens: int | None = None  # the prompt is cut to fit, least valuable parts first
    kb_snippets: int = 0  # knowledge-base passages offered to the model per turn
    tool_rounds: int = 3  # rounds of tool calls per turn before the model must answer
    embedding_wait: float = EMBEDDING_WAIT_S  # how long recall waits for the message's embedding


class _SessionLocks:
    """One FIFO lock per session id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, session_id: str) -> asyncio.Lock:
        lock, users = self._locks.get(session_id, (asyncio.Lock(), 0))
        self._locks[session_id] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._release_ref(session_id)
            raise
        return lock

    def release(self, session_id: str, lock: asyncio.Lock) -> None:
        lock.release()
        self._release_ref(session_id)

    def _release_ref(self, session_id: str) -> None:
        lock, users = self._locks[session_id]
        if users <= 1:
            del self._locks[session_id]
        else:
            self._locks[session_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def prepare_text(text: str, *, limit: int) -> str:
    """Clean ``text`` and cut it to ``limit`` characters with a visible note saying so."""
    text = clean_text(text).strip()
    if len(text) > limit:
        note = f"\n\n[message truncated: it had {len(text):,} characters; the first {limit:,} were kept]"
        text = text[:limit] + note
    return text


class SupportBot:
    """Runs turns. Turns of one session are serialised; different sessions run concurrently.

    Every turn runs in a task the bot owns, so a caller that goes away (a closed browser tab, a cancelled
    webhook) does not abandon a half-done turn: it finishes and is stored, and :meth:`aclose` waits for it.
    """

    def __init__(
        self,
        *,
        store: SessionStore,
        model: BaseChatModel,
        options: CoreOptions,
        strategy: MemoryStrategy | None = None,
        resources: Sequence[AsyncClosable] = (),
        metrics: TurnMetrics | None = None,
        knowledge: KnowledgeBase | None = None,
        summarizer: Summarizer | None = None,
        extractor: EntityExtractor | None = None,
        recall: Recall | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.options = options
        self.strategy = strategy or WindowStrategy(k=20, max_tokens=3_000)
        self.metrics = metrics or TurnMetrics()
        self.knowledge = knowledge
        self.upkeep = Upkeep(
            store=store,
            metrics=self.metrics,
            window=self.strategy.load_size,
            summarizer=summarizer,
            extractor=extractor,
        )
        self.recall = recall
        self.toolbox = toolbox
        self._with_tools, self._answer_now = self._bind_tools(model, toolbox)
        self._resources = tuple(resources) + ((toolbox,) if toolbox is not None else ())
        self._locks = _SessionLocks()
        self._turns: set[asyncio.Task[Reply | None]] = set()
        self._closing = False
        self._turn_counter = 0
        self._rate_limiter = RateLimiter(messages=options.rate_limit_messages, period=options.rate_limit_period)

    @staticmethod
    def _bind_tools(model: BaseChatModel, toolbox: Toolbox | None) -> tuple[ToolModel | None, ToolModel | None]:
        """The model with the tools offered, and with them shown but not callable (for the last round).

        A model without tool calling (the offline responder) gets none, and turns run exactly as before.
        """
        if toolbox is None or not toolbox.tools:
            return None, None
        try:
            return model.bind_tools(toolbox.tools), model.bind_tools(toolbox.tools, tool_choice="none")
        except NotImplementedError:
            log.info("the model cannot call tools; tools are off")
            return None, None

    def session_key(self, msg: IncomingMessage) -> SessionKey:
        """The session ``msg`` belongs to under the configured scope.

        Raises:
            InvalidMessage: the message's ids cannot form a session key.
        """
        return session_key_for(msg, self.options.scope)

    def session_id(self, msg: IncomingMessage) -> str:
        """The id of ``msg``'s session, or ``""`` when its ids form none (the turn then answers with a notice)."""
        try:
            return self.session_key(msg).id
        except InvalidMessage:
            return ""

    async def handle(self, msg: IncomingMessage, *, from_inbox: bool = False) -> Reply | None:
        """Answer ``msg`` once. ``None`` means this delivery was already answered (or is being answered).

        Args:
            msg: the message.
            from_inbox: the message is an inbox entry, so a turn already running for it (``IN_PROGRESS``) is an
                earlier attempt at the same entry: wait for it to finish (then ``None``) or for its lease to run
                out (a dead process; then this attempt answers), instead of returning ``None`` at once.

        Raises:
            ShuttingDown: :meth:`aclose` has begun; the platform should redeliver to another process.
        """
        return await asyncio.shield(self._spawn(msg, None, from_inbox=from_inbox))

    async def stream(
        self,
        msg: IncomingMessage,
        *,
        on_reply: Callable[[Reply | None], None] | None = None,
        from_inbox: bool = False,
    ) -> AsyncGenerator[str, None]:
        """Answer ``msg`` chunk by chunk as the model produces it; a redelivery yields nothing.

        The turn runs in its own task: if the consumer stops early, the turn still completes and is stored.
        ``on_reply`` receives the finished :class:`Reply` (its ``kind`` says how the turn went), before the last chunk
        of a notice. ``from_inbox`` is as for :meth:`handle`.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def sink(chunk: str) -> None:
            queue.put_nowait(chunk)

        task = self._spawn(msg, sink, from_inbox=from_inbox)
        task.add_done_callback(lambda _: queue.put_nowait(None))
        streamed = False
        while (chunk := await queue.get()) is not None:
            streamed = True
            yield chunk
        reply = await asyncio.shield(task)
        if on_reply is not None:
            on_reply(reply)
        if reply is not None and reply.kind is ReplyKind.NOTICE:
            yield f"\n\n_({reply.text})_" if streamed else reply.text

    @property
    def closing(self) -> bool:
        """Whether :meth:`aclose` has begun; adapters then refuse deliveries so the platform retries elsewhere."""
        return self._closing

    @property
    def in_flight(self) -> int:
        """Turns and their background upkeep (summary folds, entity extraction) currently running."""
        return len(self._turns) + len(self.upkeep.tasks)

    def _running(self) -> set[asyncio.Task[Any]]:
        return set(self._turns) | self.upkeep.tasks

    def _spawn(self, msg: IncomingMessage, sink: Sink | None, *, from_inbox: bool) -> asyncio.Task[Reply | None]:
        if self._closing:
            raise ShuttingDown("the bot is shutting down and takes no new messages")
        self._turn_counter += 1
        task = asyncio.get_running_loop().create_task(
            self._turn(msg, sink, from_inbox=from_inbox),
            name=f"supportbot-turn-{self._turn_counter}:{msg.platform}:{msg.event_id}",
        )
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
        return task

    async def _turn(self, msg: IncomingMessage, sink: Sink | None, *, from_inbox: bool) -> Reply | None:
        started = time.perf_counter()
        text = prepare_text(msg.text, limit=self.options.max_message_chars)
        if not text:
            return Reply(EMPTY_MESSAGE_REPLY, "", msg.event_id, ReplyKind.NOTICE)
        try:
            key = self.session_key(msg)
        except InvalidMessage as exc:
            self._count_error(exc)
            log.warning("rejected message %s from %s: %s", msg.event_id, msg.platform, exc)
            return Reply(INVALID_MESSAGE_REPLY, "", msg.event_id, ReplyKind.NOTICE)
        if not self._rate_limiter.allow(msg.sender):
            self.metrics.errors.labels("rate_limited").inc()
            log.info("rate limited %s user on session %s", msg.platform, key.id, extra={"session_id": key.id})
            return Reply(RATE_LIMITED_REPLY, key.id, msg.event_id, ReplyKind.NOTICE)
        lock = await self._locks.acquire(key.id)
        self.metrics.active_sessions.set(len(self._locks))
        try:
            reply = await self._locked_turn(msg, key, text, sink, started=started, from_inbox=from_inbox)
        except StoreUnavailable:
            raise  # only an inbox entry's turn lets it through: the entry is answered once the store is back
        except Exception as exc:
            self._count_error(exc)
            log.exception("turn failed for session %s", key.id, extra={"session_id": key.id})
            reply = Reply(INTERNAL_ERROR_REPLY, key.id, msg.event_id, ReplyKind.NOTICE)
        finally:
            self._locks.release(key.id, lock)
            self.metrics.active_sessions.set(len(self._locks))
        if reply is not None:
            self.metrics.turns.labels(msg.platform, reply.kind.value).inc()
            self.metrics.turn_seconds.labels(msg.platform).observe(time.perf_counter() - started)
            log.info(
                "turn done",
                extra={
                    "session_id": key.id,
                    "platform": msg.platform,
                    "event_id": msg.event_id,
                    "kind": reply.kind.value,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return reply

    async def _begin(
        self,
        key: SessionKey,
        event_id: str,
        *,
        recall_after: int | None = None,
        fence: int | None = None,
        from_inbox: bool = False,
    ) -> TurnStart:
        """Claim the delivery and take the lease, backing off while another process holds the session (or, for an
        inbox entry, while an earlier attempt at the same entry does)."""
        deadline = time.monotonic() + self.options.lease_wait
        delay = LEASE_RETRY_MIN_S
        while True:
            with self.metrics.store_seconds.labels("begin").time():
                start = await self.store.begin_turn(
                    key, event_id=event_id, window=self.strategy.load_size, recall_after=recall_after, fence=fence
                )
            waits = start.status is ClaimStatus.BUSY or (from_inbox and start.status is ClaimStatus.IN_PROGRESS)
            if not waits:
                return start
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionBusy(f"session {key.id} stayed busy for {self.options.lease_wait:.0f}s")
            pause = delay * (0.5 + random.random())
            if start.retry_after > 0:  # the holder's lease ends sooner than the back-off: try right then
                pause = min(pause, start.retry_after)
            await asyncio.sleep(min(pause, remaining))
            delay = min(delay * 2, LEASE_RETRY_MAX_S)

    async def _locked_turn(
        self, msg: IncomingMessage, key: SessionKey, text: str, sink: Sink | None, *, started: float, from_inbox: bool
    ) -> Reply | None:
        recall_after = self.recall.fetched_upto(key) if self.recall is not None else None
        try:
            start = await self._begin(key, msg.event_id, recall_after=recall_after, from_inbox=from_inbox)
        except StoreUnavailable as exc:
            self._count_error(exc)
            log.error("memory unavailable for session %s: %s", key.id, exc, extra={"session_id": key.id})
            if from_inbox:
                raise  # the entry stays in the inbox and is answered once the store is back
            if self.options.answer_without_memory:
                return await self._stateless_turn(msg, key, text, sink)
            return Reply(MEMORY_UNAVAILABLE_REPLY, key.id, msg.event_id, ReplyKind.NOTICE)
        except SessionBusy as exc:
            self._count_error(exc)
            log.warning("%s", exc, extra={"session_id": key.id})
            return Reply(SESSION_BUSY_REPLY, key.id, msg.event_id, ReplyKind.NOTICE)
        self.metrics.lock_wait_seconds.observe(time.perf_counter() - started)
        if start.status is not ClaimStatus.ACQUIRED:
            self.metrics.duplicates.inc()
            log.info(
                "duplicate delivery %s ignored (%s)", msg.event_id, start.status.value, extra={"session_id": key.id}
            )
            return None
        assert start.lease is not None and start.context is not None
        lease: Lease | None = start.lease
        keeper = asyncio.get_running_loop().create_task(
            self._keep_lease(start.lease), name=f"supportbot-lease:{key.id}"
        )
        # The message is embedded while the model answers; recall waits for it only when there is something to rank.
        embedding = self._embed_soon(key, text)
        try:
            recalled = await self._recalled(key, start.context, embedding, after=recall_after or 0)
            prompt = self._prompt(start.context, text, recalled)
            facts = TurnFacts(key, msg.event_id, msg.platform, msg.user, start.context, text, sender=msg.sender)
            with self.metrics.model_seconds.time():
                answer, kind = await self._ask(prompt, key, sink, facts)
            user = StoredMessage("user", text, msg.timestamp, user=msg.user, event_id=msg.event_id)
            reply_message = StoredMessage("assistant", answer, time.time()) if answer else None
            messages = (user,) if reply_message is None else (user, reply_message)
            turn_embedding = await self._turn_embedding(key, embedding, text, answer)
            saved = await self._save(start.lease, messages, platform=msg.platform, embedding=turn_embedding)
            lease = None
            if not saved:
                self.metrics.duplicates.inc()
                return None
            self.upkeep.after_turn(key, start.context, saved=len(messages), text=text)
        except StoreUnavailable as exc:
            self._count_error(exc)
            log.error("could not save the turn of session %s: %s", key.id, exc, extra={"session_id": key.id})
            if from_inbox:
                raise
            return Reply(MEMORY_UNAVAILABLE_REPLY, key.id, msg.event_id, ReplyKind.NOTICE)
        except SessionErased as exc:
            self._count_error(exc)
            log.info("session %s was erased during the turn, which was not saved", key.id, extra={"session_id": key.id})
            return Reply(ERASED_REPLY, key.id, msg.event_id, ReplyKind.NOTICE)
        finally:
            keeper.cancel()
            if embedding is not None:
                embedding.cancel()
            if lease is not None:
                await self._abort_quietly(lease)
        return Reply(answer if kind is ReplyKind.ANSWER else MODEL_FAILED_REPLY, key.id, msg.event_id, kind)

    async def _keep_lease(self, lease: Lease) -> None:
        """Renew the turn's lease every third of its length while the turn runs (model streaming included), so a
        slow model keeps its session and a crashed process blocks it for one lease length at most."""
        every = self.store.limits.lease_ttl / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.store.renew_lease(lease):
                    log.warning("lease on session %s expired during the turn", lease.key.id)
                    return
            except StoreUnavailable as exc:
                log.warning("could not renew the lease of session %s: %s", lease.key.id, exc)

    def _embed_soon(self, key: SessionKey, text: str) -> asyncio.Task[Vector | None] | None:
        """Start embedding ``text`` for vector recall; the task yields ``None`` if the embedding model fails."""
        if self.recall is None:
            return None
        recall = self.recall

        async def embed() -> Vector | None:
            try:
                with self.metrics.embedding_seconds.time():
                    return await recall.embed(text)
            except Exception as exc:  # the embedding model's own errors: recall is an extra, never a failed turn
                self.metrics.errors.labels("embedding").inc()
                log.warning("embedding failed for session %s: %s", key.id, type(exc).__name__)
                return None

        return asyncio.get_running_loop().create_task(embed(), name=f"supportbot-embed:{key.id}")

    async def _vector(self, embedding: asyncio.Task[Vector | None], key: SessionKey) -> Vector | None:
        """The message's embedding, or ``None`` if the model failed or is slower than ``embedding_wait``."""
        wait = self.options.embedding_wait
        try:
            return await asyncio.wait_for(asyncio.shield(embedding), wait)
        except TimeoutError:
            self.metrics.errors.labels("embedding").inc()
            log.warning("embedding for session %s took over %g s; recall skipped", key.id, wait)
            return None

    async def _recalled(
        self, key: SessionKey, context: SessionContext, embedding: asyncio.Task[Vector | None] | None, *, after: int
    ) -> list[RecalledTurn]:
        """Earlier turns of this session, out of the window, similar to the new message."""
        if self.recall is None or embedding is None:
            return []
        try:
            candidates = await self.recall.candidates(self.store, key, context, after=after)
        except StoreUnavailable as exc:
            self._count_error(exc)
            log.warning("recall skipped for session %s: %s", key.id, exc, extra={"session_id": key.id})
            return []
        if not candidates:
            return []
        query = await self._vector(embedding, key)
        recalled = [] if query is None else self.recall.rank(candidates, query)
        self.metrics.recalled_turns.inc(len(recalled))
        return recalled

    async def _turn_embedding(
        self, key: SessionKey, embedding: asyncio.Task[Vector | None] | None, text: str, answer: str
    ) -> TurnEmbedding | None:
        if self.recall is None or embedding is None:
            return None
        vector = await self._vector(embedding, key)
        return None if vector is None else self.recall.embedding(vector, question=text, answer=answer or None)

    def _prompt(self, context: SessionContext, text: str, recalled: Sequence[RecalledTurn] = ()) -> list[BaseMessage]:
        snippets: list[Snippet] = []
        if self.knowledge is not None and self.options.kb_snippets:
            snippets = [
                Snippet(h.section.article, h.section.heading, h.section.body, h.score)
                for h in self.knowledge.search(text, k=self.options.kb_snippets)
            ]
        system_prompt = self.options.system_prompt
        if context.entities:
            system_prompt = f"{system_prompt}\n\n{entities_block(context.entities)}"
        return build_prompt(
            system_prompt=system_prompt,
            context=context,
            text=text,
            strategy=self.strategy,
            snippets=snippets,
            recalled=recalled,
            max_tokens=self.options.max_prompt_tokens,
        )

    async def _stateless_turn(self, msg: IncomingMessage, key: SessionKey, text: str, sink: Sink | None) -> Reply:
        """Answer from the new message alone while the store is down; nothing is remembered, and the reply says so."""
        prompt = self._prompt(SessionContext(), text)
        answer, kind = await self._ask(prompt, key, sink)
        if kind is not ReplyKind.ANSWER:
            return Reply(MODEL_FAILED_REPLY, key.id, msg.event_id, kind)
        if sink is not None:
            await sink(STATELESS_NOTE)
        return Reply(answer + STATELESS_NOTE, key.id, msg.event_id, ReplyKind.STATELESS)

    async def _ask(
        self, prompt: list[BaseMessage], key: SessionKey, sink: Sink | None, facts: TurnFacts | None = None
    ) -> tuple[str, ReplyKind]:
        """The model's answer and how it went. A failure yields what was streamed (plus a note) or nothing.

        With tools, the model may call them for up to ``tool_rounds`` rounds; each call runs through the toolbox
        (audited), its result goes back to the model, and the last round must answer in words.
        """
        parts: list[str] = []
        try:
            messages = list(prompt)
            rounds = self.options.tool_rounds if facts is not None and self._with_tools is not None else 0
            for round_ in range(rounds + 1):
                model: ToolModel | BaseChatModel | None = self.model
                if rounds:
                    model = self._with_tools if round_ < rounds else self._answer_now
                assert model is not None
                said = await self._one_call(model, messages, parts, sink)
                if not said.tool_calls or round_ == rounds or facts is None or self.toolbox is None:
                    break  # an answer, or calls in the last round, which the model was told not to make
                messages.append(said)
                for call in said.tool_calls:
                    messages.append(await self.toolbox.run(call, facts))
            answer = "".join(parts)
            if not answer.strip():
                raise ModelError("the model returned an empty answer")
            return answer, ReplyKind.ANSWER
        except Exception as exc:
            error = translate_model_error(exc)
            self._count_error(error)
            log.error("model failed for session %s: %s", key.id, error, extra={"session_id": key.id})
            if sink is None:
                return "", ReplyKind.FALLBACK
            if parts:
                await sink(STREAM_BROKEN_NOTE)
                return "".join(parts) + STREAM_BROKEN_NOTE, ReplyKind.FALLBACK
            await sink(MODEL_FAILED_REPLY)
            return "", ReplyKind.FALLBACK

    async def _one_call(
        self, model: ToolModel | BaseChatModel, messages: list[BaseMessage], parts: list[str], sink: Sink | None
    ) -> AIMessage:
        """One model call; its words join ``parts`` (streamed to ``sink`` as they come). Returns the whole message."""
        if sink is None:
            result = await model.ainvoke(messages)
            self._count_tokens(result)
            parts.append(result.text)
            return result
        gathered: AIMessageChunk | None = None
        async for chunk in model.astream(messages):
            assert isinstance(chunk, AIMessageChunk)
            self._count_tokens(chunk)
            gathered = chunk if gathered is None else gathered + chunk
            piece = chunk.text
            if piece:
                parts.append(piece)
                await sink(piece)
        return gathered if gathered is not None else AIMessageChunk(content="")

    def _count_tokens(self, message: BaseMessage) -> None:
        usage = getattr(message, "usage_metadata", None)
        if usage:
            self.metrics.model_tokens.labels("input").inc(usage.get("input_tokens", 0))
            self.metrics.model_tokens.labels("output").inc(usage.get("output_tokens", 0))

    def _count_error(self, exc: Exception) -> None:
        self.metrics.count_error(exc)

    async def _save(
        self,
        lease: Lease,
        messages: tuple[StoredMessage, ...],
        *,
        platform: str,
        embedding: TurnEmbedding | None = None,
    ) -> bool:
        """Commit the turn; if the lease was fenced out meanwhile, take it again and append after the newer turn.

        Returns False when, meanwhile, another attempt answered the same delivery (so this reply must not be sent).

        Raises:
            SessionErased: the session was deleted since the turn began; nothing was saved.
        """
        try:
            with self.metrics.store_seconds.labels("commit").time():
                await self.store.commit_turn(lease, messages, platform=platform, embedding=embedding)
            return True
        except LeaseLost as exc:
            self._count_error(exc)
            log.warning("lease lost on session %s; saving the turn again", lease.key.id)
        start = await self._begin(lease.key, lease.event_id, fence=lease.token)
        if start.status is ClaimStatus.ERASED:
            raise SessionErased(f"session {lease.key.id} was deleted after lease {lease.token} was handed out")
        if start.status is not ClaimStatus.ACQUIRED or start.lease is None:
            return False
        try:
            await self.store.commit_turn(start.lease, messages, platform=platform, embedding=embedding)
        except BaseException:
            await self._abort_quietly(start.lease)
            raise
        return True

    async def _abort_quietly(self, lease: Lease) -> None:
        try:
            await asyncio.shield(self.store.abort_turn(lease))
        except StoreUnavailable as exc:
            log.warning("could not release the lease of session %s: %s", lease.key.id, exc)

    async def stored_reply(self, msg: IncomingMessage) -> str | None:
        """The reply stored for ``msg`` by the turn that answered it, for a retry to show again.

        ``None`` when no turn stored ``msg``; the polite fallback when the turn stored the message but the model
        had failed (nothing of the model's was kept).
        """
        record = await self.store.get(self.session_key(msg))
        if record is None:
            return None
        messages = record.messages
        for i, stored in enumerate(messages):
            if stored.role == "user" and stored.event_id == msg.event_id:
                following = messages[i + 1] if i + 1 < len(messages) else None
                if following is not None and following.role == "assistant":
                    return following.content
                return MODEL_FAILED_REPLY
        return None

    async def reset(self, key: SessionKey) -> bool:
        """Forget a session. Returns whether it existed."""
        return await self.store.delete(key)

    async def aclose(self, *, grace: float = 10.0) -> None:
        """Let in-flight turns finish for up to ``grace`` seconds, then refuse new ones and cancel the rest.

        Turns that start during the grace period (a request an adapter accepted just before it stopped
        listening) are waited for too, so nothing already received is turned away. Closes the model's
        connections; the store belongs to whoever opened it.
        """
        deadline = time.monotonic() + grace
        while (running := self._running()) and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.wait(running, timeout=remaining)
        self._closing = True
        pending = self._running()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        resources, self._resources = self._resources, ()
        for resource in resources:
            await resource.aclose()
