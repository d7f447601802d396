"""The one place that builds the chat model from configuration, and maps its failures onto our error tree."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

from langchain_core.language_models.chat_models import BaseChatModel

from bot.config import Settings, redact_url
from bot.errors import ModelAuthError, ModelError, ModelRateLimited, ModelTimeout
from bot.kb import KnowledgeBase
from bot.offline import OfflineResponder

# Local OpenAI-compatible servers (Ollama, vLLM, llama.cpp) ignore the key, but the client insists on one.
_PLACEHOLDER_KEY = "not-needed"


class AsyncClosable(Protocol):
    """Anything with an async ``aclose()``: HTTP clients the model owns."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChatModel:
    """A chat model and the connections it owns, which its owner closes at shutdown."""

    model: BaseChatModel
    resources: tuple[AsyncClosable, ...] = ()

    async def aclose(self) -> None:
        """Close the owned connections."""
        for resource in self.resources:
            await resource.aclose()


def build_chat_model(settings: Settings, kb: KnowledgeBase) -> ChatModel:
    """``ChatOpenAI`` when an OpenAI-compatible endpoint is configured, else the offline responder."""
    if not settings.llm_configured:
        return ChatModel(OfflineResponder(kb=kb, top_k=settings.kb.top_k))
    import openai
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    secrets = settings.secrets
    api_key = secrets.openai_api_key or SecretStr(_PLACEHOLDER_KEY)
    # Our own client, so the bot can close its connections instead of leaving them to a process-wide cache.
    http_client = openai.DefaultAsyncHttpxClient()
    model = ChatOpenAI(
        model=settings.llm.model,
        temperature=settings.llm.temperature,
        timeout=settings.llm.timeout,
        max_retries=settings.llm.max_retries,
        max_completion_tokens=settings.llm.max_tokens,
        api_key=api_key,
        base_url=secrets.openai_base_url,
        http_async_client=http_client,
    )
    return ChatModel(model, (http_client,))


def model_name(settings: Settings) -> str:
    """The model's name alone, for what anyone may see (the page's header, ``/readyz``): never its server."""
    return settings.llm.model if settings.llm_configured else "offline knowledge-base responder"


def describe_model(settings: Settings) -> str:
    """A one-line description for the operator's start banner: the model and its server, without credentials."""
    if not settings.llm_configured:
        return "offline knowledge-base responder (no LLM configured)"
    where = redact_url(settings.secrets.openai_base_url or "https://api.openai.com/v1")
    return f"{settings.llm.model} at {where}"


def translate_model_error(exc: Exception) -> ModelError:
    """The most specific :class:`ModelError` for an exception raised by the model client."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, TimeoutError):
        return ModelTimeout(f"the model did not answer in time: {exc}")
    openai = sys.modules.get("openai")
    if openai is not None:
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeout("the model did not answer in time")
        if isinstance(exc, openai.RateLimitError):
            return ModelRateLimited("the model provider is rate limiting us (HTTP 429)")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ModelAuthError("the model provider rejected the API key")
        if isinstance(exc, openai.APIStatusError):
            return ModelError(f"the model provider answered HTTP {exc.status_code}")
        if isinstance(exc, openai.APIConnectionError):
            return ModelError("cannot reach the model provider")
    return ModelError(f"the model failed: {type(exc).__name__}")
