"""Prometheus metrics of the turn pipeline, in a registry of their own (one per bot, so tests never collide)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.inbox.base import Inbox, InboxCounters, InboxStats

# Seconds; a turn spans a store round trip or two and a model call of up to a minute.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


_INBOX_COUNTERS = (
    ("supportbot_inbox_recorded", "Messages this process recorded in the inbox.", "recorded"),
    ("supportbot_inbox_already_recorded", "Platform retries of messages recorded before.", "already_recorded"),
    ("supportbot_inbox_redeliveries", "Inbox messages handed out again after an unfinished attempt.", "redeliveries"),
    ("supportbot_inbox_claimed_from_dead", "Inbox messages taken over from a stopped worker.", "claimed_from_dead"),
    ("supportbot_inbox_abandoned", "Inbox messages set aside after too many failed attempts.", "abandoned"),
)


class _InboxCounters(Collector):
    """The inbox's counters, read when ``/metrics`` is scraped."""

    def __init__(self, counters: InboxCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterable[Metric]:
        for name, doc, field in _INBOX_COUNTERS:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(getattr(self._counters, field)))
            yield family


class TurnMetrics:
    """Counters, histograms and gauges the core updates on every turn."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.turns = Counter(
            "supportbot_turns", "Turns answered, by platform and outcome.", ["platform", "kind"], registry=r
        )
        self.turn_seconds = Histogram(
            "supportbot_turn_seconds", "Whole-turn latency.", ["platform"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.model_seconds = Histogram(
            "supportbot_model_seconds", "Model call latency.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.store_seconds = Histogram(
            "supportbot_store_seconds", "Store call latency.", ["operation"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.embedding_seconds = Histogram(
            "supportbot_embedding_seconds",
            "Embedding a message for vector recall.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.recalled_turns = Counter(
            "supportbot_recalled_turns", "Earlier turns vector recall put into prompts.", registry=r
        )
        self.tool_calls = Counter(
            "supportbot_tool_calls", "Tool calls by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.active_sessions = Gauge(
            "supportbot_active_sessions", "Sessions with a turn running or waiting in this process.", registry=r
        )
        self.model_tokens = Counter(
            "supportbot_model_tokens", "Tokens reported by the model, by direction.", ["direction"], registry=r
        )
        self.errors = Counter("supportbot_errors", "Failures by kind.", ["kind"], registry=r)
        self.duplicates = Counter(
            "supportbot_duplicate_deliveries", "Deliveries ignored because they were already answered.", registry=r
        )
        self.lock_wait_seconds = Histogram(
            "supportbot_lock_wait_seconds",
            "Time a turn waited for its session (in-process lock and store lease).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

        self.inbox_depth = Gauge(
            "supportbot_inbox_depth", "Messages recorded in the inbox and not yet answered (all processes).", registry=r
        )
        self.inbox_oldest_age = Gauge(
            "supportbot_inbox_oldest_age_seconds",
            "Age of the oldest message waiting in the inbox (0 when it is empty).",
            registry=r,
        )
        self.inbox_in_flight = Gauge(
            "supportbot_inbox_in_flight", "Inbox messages a worker is answering right now (all processes).", registry=r
        )

    def watch_inbox(self, inbox: Inbox) -> None:
        """Expose ``inbox``'s own counters (this process's, since it started) on ``/metrics``."""
        self.registry.register(_InboxCounters(inbox.counters))

    def inbox_stats(self, stats: InboxStats) -> None:
        """Record the inbox's latest depth, oldest age and in-flight count."""
        self.inbox_depth.set(stats.depth)
        self.inbox_oldest_age.set(stats.oldest_age)
        self.inbox_in_flight.set(stats.in_flight)

    def count_error(self, exc: Exception) -> None:
        """Count a failure under its kind: ``ModelRateLimited`` -> ``model_rate_limited``."""
        self.errors.labels(re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
