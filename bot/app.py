"""Assembly: settings in, a ready :class:`SupportBot` out. The one place that wires store, model and strategy."""

from __future__ import annotations

import socket
from pathlib import Path

from bot.config import Settings, redact_url
from bot.core import CoreOptions, SupportBot
from bot.embeddings import build_embeddings
from bot.entities import EntityExtractor, ModelEntityExtractor, RuleEntityExtractor
from bot.errors import ConfigError
from bot.inbox import Inbox, open_inbox
from bot.kb import SAMPLE_KB, KnowledgeBase
from bot.memory import SessionStore, StoreLimits, open_store
from bot.memory.codec import EncryptedCodec
from bot.metrics import TurnMetrics
from bot.model import build_chat_model, describe_model
from bot.ratelimit import Quotas
from bot.recall import Recall
from bot.strategies import BufferStrategy, MemoryStrategy, WindowStrategy
from bot.summary import ExtractiveSummarizer, ModelSummarizer, Summarizer
from bot.tools import TicketWebhook, Toolbox

UNSUMMARIZED_FACTOR = 5  # with a summary, up to 5 x max_messages wait for a fold before being trimmed


def summary_enabled(settings: Settings) -> bool:
    """A rolling summary only makes sense when the model sees a window, not the whole buffer."""
    return settings.memory.summary and settings.memory.strategy == "window"


def store_limits(settings: Settings) -> StoreLimits:
    """The retention policy the configuration asks for."""
    memory = settings.memory
    return StoreLimits(
        idle_ttl=memory.idle_ttl,
        max_messages=memory.max_messages,
        dedupe_ttl=memory.dedupe_ttl,
        lease_ttl=memory.lease_ttl,
        # Keep what the summary does not cover yet, within reason, should the summarizer be down for a while.
        max_unsummarized=memory.max_messages * UNSUMMARIZED_FACTOR if summary_enabled(settings) else 0,
        max_recall=memory.recall_max_turns,
        max_audit=settings.tools.audit_max_entries,
    )


def build_codec(settings: Settings) -> EncryptedCodec | None:
    """How text is sealed at rest: with the ``SUPPORTBOT_ENCRYPTION_KEY`` keys, or not at all."""
    keys = settings.secrets.encryption_keys
    try:
        return EncryptedCodec([k.get_secret_value() for k in keys]) if keys else None
    except ValueError as exc:
        raise ConfigError(f"SUPPORTBOT_ENCRYPTION_KEY: {exc}") from None


def consumer_name(settings: Settings) -> str:
    """This process's name in the inbox: ``inbox.consumer``, else host and port, which a restarted process keeps,
    so it answers what it had taken before it stopped without waiting for the visibility timeout."""
    return settings.inbox.consumer or f"{socket.gethostname()}:{settings.server.port}"


def build_inbox(settings: Settings) -> Inbox:
    """The inbox beside the configured store: a table of the SQLite file, streams on the Redis, or in-process."""
    inbox = settings.inbox
    return open_inbox(
        settings.store_url,
        consumer=consumer_name(settings),
        codec=build_codec(settings),
        redis_cluster=settings.memory.redis_cluster,
        visibility=inbox.visibility,
        dedupe_ttl=settings.memory.dedupe_ttl,
        shards=inbox.shards,
    )


def build_store(settings: Settings) -> SessionStore:
    """The store the configuration names (``REDIS_URL`` wins over ``memory.store_url``)."""
    codec = build_codec(settings)
    try:
        return open_store(
            settings.store_url, limits=store_limits(settings), redis_cluster=settings.memory.redis_cluster, codec=codec
        )
    except ValueError as exc:
        raise ConfigError(f"{settings.origin('memory', 'store_url')}: {exc}") from None


def describe_setup(settings: Settings, bot: SupportBot) -> list[str]:
    """The banner lines every entry point prints: the store, the model, the knowledge base and vector recall."""
    model = describe_model(settings)
    if not settings.llm_configured:
        model += "; set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server such as Ollama, for full answers"
    lines = [f"store: {redact_url(settings.store_url)}", f"model: {model}"]
    if bot.knowledge is not None:
        lines.append(f"knowledge base: {bot.knowledge.describe()}")
    if bot.recall is None:
        lines.append("recall: off (memory.recall)")
    elif bot.recall.preload:
        local = "a local model, loading in the background (about 450 MB of memory)"
        lines.append(f"recall: {bot.recall.model_name}, {local}")
    elif bot.recall.model_name.startswith("hashing"):
        lines.append(f"recall: {bot.recall.model_name} (matches shared words; the recall extra adds a local model)")
    else:
        lines.append(f"recall: {bot.recall.model_name}")
    return lines


def build_strategy(settings: Settings) -> MemoryStrategy:
    """The memory strategy the configuration names."""
    memory = settings.memory
    if memory.strategy == "buffer":
        return BufferStrategy(max_messages=memory.max_messages)
    return WindowStrategy(k=memory.window_messages, max_tokens=memory.window_tokens)


def build_toolbox(
    settings: Settings, *, store: SessionStore, knowledge: KnowledgeBase, metrics: TurnMetrics
) -> Toolbox | None:
    """The tools the configuration turns on; ``None`` when none is, or when no model that calls tools is set up."""
    tools = settings.tools
    if not settings.llm_configured:
        return None
    tickets = None
    url = settings.secrets.ticket_webhook_url
    if tools.create_ticket and url is not None:
        token = settings.secrets.ticket_webhook_token
        tickets = TicketWebhook(
            url.get_secret_value(),
            token=token.get_secret_value() if token is not None else None,
            timeout=tools.ticket_timeout,
            retries=tools.ticket_retries,
        )
    toolbox = Toolbox(
        store=store,
        knowledge=knowledge,
        search_kb=tools.search_kb,
        tickets=tickets,
        escalate=tools.escalate_to_human,
        metrics=metrics,
        quotas=Quotas(
            tickets_per_day=settings.quotas.tickets_per_day,
            tickets_per_session=settings.quotas.tickets_per_session,
            escalations_per_day=settings.quotas.escalations_per_day,
            escalations_per_session=settings.quotas.escalations_per_session,
            escalation_open_for=settings.quotas.escalation_open_for,
        ),
    )
    return toolbox if toolbox.tools else None


def load_knowledge(settings: Settings) -> KnowledgeBase:
    """The articles ``kb.path`` names, or the sample articles shipped with Supportbot.

    Raises:
        ConfigError: ``kb.path`` is not a folder.
    """
    if settings.kb.path is None:
        return KnowledgeBase.from_directory(SAMPLE_KB)
    directory = Path(settings.kb.path).expanduser().absolute()
    if not directory.is_dir():
        raise ConfigError(f"{settings.origin('kb', 'path')}: no folder of help articles at {directory}")
    return KnowledgeBase.from_directory(directory)


def build_bot(settings: Settings, *, store: SessionStore | None = None) -> SupportBot:
    """A bot on the configured store, model and strategy."""
    kb = load_knowledge(settings)
    options = CoreOptions(
        system_prompt=settings.bot.system_prompt,
        scope=settings.memory.scope,
        max_message_chars=settings.memory.max_message_chars,
        lease_wait=settings.memory.lease_wait,
        answer_without_memory=settings.memory.when_unavailable == "answer",
        rate_limit_messages=settings.rate_limit.messages,
        rate_limit_period=settings.rate_limit.period,
        tool_rounds=settings.tools.max_rounds,
        embedding_wait=settings.memory.embedding_wait,
        max_prompt_tokens=settings.llm.max_prompt_tokens,
        # The offline responder reads the knowledge base itself; a model gets the best passages in its prompt.
        kb_snippets=settings.kb.top_k if settings.llm_configured and settings.kb.in_prompt else 0,
    )
    chat_model = build_chat_model(settings, kb)
    extractor: EntityExtractor | None = None
    if settings.memory.entities:
        extractor = ModelEntityExtractor(chat_model.model) if settings.llm_configured else RuleEntityExtractor()
    summarizer: Summarizer | None = None
    if summary_enabled(settings):
        summarizer = ModelSummarizer(chat_model.model) if settings.llm_configured else ExtractiveSummarizer()
    store = store or build_store(settings)
    resources = list(chat_model.resources)
    recall: Recall | None = None
    if settings.memory.recall:
        embedding = build_embeddings(settings)
        resources += embedding.resources
        recall = Recall(
            embeddings=embedding.embeddings,
            model_name=embedding.name,
            k=settings.memory.recall_k,
            min_score=settings.memory.recall_min_score,
            preload=embedding.local,
        )
    metrics = TurnMetrics()
    return SupportBot(
        store=store,
        metrics=metrics,
        toolbox=build_toolbox(settings, store=store, knowledge=kb, metrics=metrics),
        model=chat_model.model,
        options=options,
        strategy=build_strategy(settings),
        resources=resources,
        recall=recall,
        knowledge=kb,
        summarizer=summarizer,
        extractor=extractor,
    )
