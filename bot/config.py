"""Configuration: ``config.yaml`` (every key commented there), overridden by the environment.

Precedence, highest first: the named variables of the contract (``REDIS_URL``, ``PORT``, ``OPENAI_*``),
then ``SUPPORTBOT_<SECTION>__<KEY>`` variables, then the YAML file, then the defaults below.
Secrets come only from the environment and are held as ``SecretStr``, so they never print.

Relative paths in the YAML file (``kb.path``, ``sqlite:///relative.db``) are taken from the file's folder, so a
command means the same files whatever folder it runs in; paths given in the environment are taken from the
working directory, as a shell user expects. Every error names where the bad value came from: the variable, or
the file and the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from bot import constants
from bot.errors import ConfigError
from bot.session import Scope

DEFAULT_CONFIG_PATH = "config.yaml"
STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "unix", "redis+cluster")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, None: 1.0}

# Keys that would hold a secret if they were allowed in the file, and where the secret goes instead.
_SECRET_KEYS = {
    "api_key": "OPENAI_API_KEY",
    "openai_api_key": "OPENAI_API_KEY",
    "password": "REDIS_URL",
    "token": "the platform's *_TOKEN variable",
    "bot_token": "SLACK_BOT_TOKEN / DISCORD_TOKEN",
    "signing_secret": "SLACK_SIGNING_SECRET",
    "api_token": "SUPPORTBOT_WEB_TOKEN",
    "app_token": "SLACK_APP_TOKEN",
    "encryption_key": "SUPPORTBOT_ENCRYPTION_KEY",
}


# The environment being read by load_settings (the process environment otherwise).
_ENVIRONMENT: ContextVar[Mapping[str, str]] = ContextVar("supportbot_environment", default=os.environ)


def parse_duration(value: Any) -> Any:
    """Accept seconds as a number or text with a unit: ``"250ms"``, ``"30s"``, ``"5m"``, ``"12h"``, ``"7d"``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 30, '30s', '5m', '12h' or '7d'")
        return float(match.group(1)) * _UNIT_S[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


def check_store_url(url: str, *, schemes: tuple[str, ...] = STORE_SCHEMES) -> str:
    """``url`` when it names a store Supportbot can open; the message never repeats the URL (it may hold a password).

    Raises:
        ValueError: another scheme, or a ``sqlite:///`` URL without a path.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in schemes:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        names = [f"{s}://" for s in schemes]
        raise ValueError(f"expected a {', '.join(names[:-1])} or {names[-1]} URL, got {shown}")
    if scheme == "sqlite" and (not url.startswith("sqlite:///") or len(url) == len("sqlite:///")):
        raise ValueError("expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return url


def _user_folder(env: Mapping[str, str], variable: str, fallback: str) -> Path:
    """An XDG base folder: ``$XDG_DATA_HOME``, else ``~/.local/share`` (and the like for the others)."""
    return Path(env.get(variable) or Path(env.get("HOME") or Path.home()) / fallback)


def default_chat_log(env: Mapping[str, str]) -> str:
    """Where the terminal chat logs, so warnings never land between its prompts and answers."""
    return str(_user_folder(env, "XDG_STATE_HOME", ".local/state") / "supportbot" / "chat.log")


def default_store_url(env: Mapping[str, str]) -> str:
    """Where sessions live when nothing says: a file in the user's data folder, never in whatever folder a command
    happens to run in."""
    return f"sqlite:///{_user_folder(env, 'XDG_DATA_HOME', '.local/share') / 'supportbot' / 'supportbot.db'}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSettings(_Section):
    name: str = "Supportbot"
    system_prompt: str = (
        "You are Supportbot, the IT helpdesk assistant of this organisation. Answer briefly and concretely, "
        "with numbered steps when there are steps. Use the conversation so far; never invent facts about the user. "
        "If a problem needs a person (hardware faults, access approvals, security incidents), say so and tell the "
        "user what to put in a ticket."
    )


class MemorySettings(_Section):
    store_url: str = Field(default_factory=lambda: default_store_url(_ENVIRONMENT.get()))
    redis_cluster: bool = False
    when_unavailable: Literal["refuse", "answer"] = "refuse"
    scope: Scope = Scope.THREAD_USER
    strategy: Literal["window", "buffer"] = "window"
    summary: bool = True
    entities: bool = True
    recall: bool = True
    recall_k: int = Field(default=3, ge=1, le=20)
    recall_min_score: float = Field(default=0.3, ge=-1.0, le=1.0)
    recall_max_turns: int = Field(default=1_000, ge=10, le=100_000)
    embeddings: Literal["auto", "openai", "minilm", "hashing"] = "auto"
    embeddings_model: str = "text-embedding-3-small"
    embedding_wait: Duration = constants.EMBEDDING_WAIT_S
    window_messages: int = Field(default=constants.WINDOW_MESSAGES, ge=1, le=10_000)
    window_tokens: int = Field(default=3_000, ge=100)
    max_messages: int = Field(default=constants.MAX_MESSAGES, ge=2, le=1_000_000)
    max_message_chars: int = Field(default=constants.MAX_MESSAGE_CHARS, ge=100)
    idle_ttl: Duration = constants.IDLE_TTL_S
    dedupe_ttl: Duration = constants.DEDUPE_TTL_S
    lease_ttl: Duration = constants.LEASE_TTL_S
    lease_wait: Duration = constants.LEASE_WAIT_S
    sweep_interval: Duration = constants.SWEEP_INTERVAL_S

    @field_validator("store_url")
    @classmethod
    def _known_store(cls, url: str) -> str:
        return check_store_url(url)


class LLMSettings(_Section):
    provider: Literal["auto", "openai", "offline"] = "auto"
    model: str = "gpt-4o-mini"
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    timeout: Duration = 30.0
    max_retries: int = Field(default=2, ge=0, le=10)
    max_tokens: int | None = Field(default=None, ge=1)
    max_prompt_tokens: int = Field(default=6_000, ge=200)


class ToolsSettings(_Section):
    search_kb: bool = True
    create_ticket: bool = True
    escalate_to_human: bool = True
    max_rounds: int = Field(default=3, ge=1, le=10)
    ticket_timeout: Duration = 10.0
    ticket_retries: int = Field(default=3, ge=0, le=10)
    audit_max_entries: int = Field(default=1_000, ge=10, le=100_000)


class KBSettings(_Section):
    path: str | None = None  # None: the sample articles shipped inside the package
    top_k: int = Field(default=2, ge=1, le=10)
    in_prompt: bool = True


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65_535)
    role: Literal["all", "web", "worker"] = "all"
    shutdown_grace: Duration = 20.0
    keepalive_timeout: Duration = 15.0
    body_timeout: Duration = 30.0


class InboxSettings(_Section):
    consumer: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")
    visibility: Duration = constants.INBOX_VISIBILITY_S
    shards: int = Field(default=constants.INBOX_SHARDS, ge=1, le=256)
    max_attempts: int = Field(default=constants.INBOX_MAX_ATTEMPTS, ge=1, le=100)
    concurrency: int = Field(default=constants.INBOX_CONCURRENCY, ge=1, le=10_000)


class WebSettings(_Section):
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=65_536, ge=1_024, le=10_485_760)
    trusted_proxies: tuple[str, ...] = ()
    metrics_require_token: bool = False

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network such as 10.0.0.0/8") from None
        return value


class RateLimitSettings(_Section):
    messages: int = Field(default=20, ge=0)
    period: Duration = 60.0


class QuotaSettings(_Section):
    tickets_per_day: int = Field(default=5, ge=0)
    tickets_per_session: int = Field(default=3, ge=0)
    escalations_per_day: int = Field(default=3, ge=0)
    escalations_per_session: int = Field(default=2, ge=0)
    escalation_open_for: Duration = 86_400.0


class SlackSettings(_Section):
    api_url: str = "https://slack.com/api/"
    follow_threads: bool = True
    channels: tuple[str, ...] = ()
    stream: bool = True
    command: str = Field(default="/helpdesk", pattern=r"^/[a-z0-9_-]{1,31}$")
    escalation_channel: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,30}$")


class DiscordSettings(_Section):
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"
    reply_in_thread: bool = True
    follow_threads: bool = True
    guilds: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    shard_count: int | None = Field(default=None, ge=1)
    escalation_channel: int | None = Field(default=None, ge=1)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    chat_file: str | None = None  # None: default_chat_log()


class Secrets(BaseModel):
    """Values read only from the environment."""

    model_config = ConfigDict(frozen=True)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    redis_url: SecretStr | None = None
    web_tokens: tuple[SecretStr, ...] = ()
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    discord_token: SecretStr | None = None
    encryption_keys: tuple[SecretStr, ...] = ()
    ticket_webhook_url: SecretStr | None = None
    ticket_webhook_token: SecretStr | None = None

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Secrets:
        """Read the contract's variables; empty values count as unset."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def secret(name: str) -> SecretStr | None:
            value = get(name)
            return SecretStr(value) if value else None

        return cls(
            openai_api_key=secret("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            redis_url=secret("REDIS_URL"),
            web_tokens=tuple(SecretStr(t.strip()) for t in (get("SUPPORTBOT_WEB_TOKEN") or "").split(",") if t.strip()),
            slack_bot_token=secret("SLACK_BOT_TOKEN"),
            slack_signing_secret=secret("SLACK_SIGNING_SECRET"),
            slack_app_token=secret("SLACK_APP_TOKEN"),
            discord_token=secret("DISCORD_TOKEN"),
            ticket_webhook_url=secret("SUPPORTBOT_TICKET_WEBHOOK_URL"),
            ticket_webhook_token=secret("SUPPORTBOT_TICKET_WEBHOOK_TOKEN"),
            encryption_keys=tuple(
                SecretStr(k.strip()) for k in (get("SUPPORTBOT_ENCRYPTION_KEY") or "").split(",") if k.strip()
            ),
        )


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], environment: Mapping[str, str]) -> None:
        self._environment = environment
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environment.items()}


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SUPPORTBOT_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    bot: BotSettings = BotSettings()
    memory: MemorySettings = Field(default_factory=MemorySettings)  # its default store depends on the environment
    llm: LLMSettings = LLMSettings()
    kb: KBSettings = KBSettings()
    tools: ToolsSettings = ToolsSettings()
    server: ServerSettings = ServerSettings()
    inbox: InboxSettings = InboxSettings()
    web: WebSettings = WebSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    quotas: QuotaSettings = QuotaSettings()
    slack: SlackSettings = SlackSettings()
    discord: DiscordSettings = DiscordSettings()
    log: LogSettings = LogSettings()
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    _origins: Origins | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init values; SUPPORTBOT_* variables of the environment given to
        # load_settings beat it.
        return _MappingEnvSource(settings_cls, _ENVIRONMENT.get()), init_settings

    @model_validator(mode="after")
    def _metrics_token_is_set(self) -> Settings:
        if self.web.metrics_require_token and not self.secrets.web_tokens:
            raise ValueError("web.metrics_require_token needs SUPPORTBOT_WEB_TOKEN to be set")
        return self

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret in plain text, for scrubbing logs and error messages; never show the result.

        URLs that are not secret as a whole (``REDIS_URL``, ``OPENAI_BASE_URL``) contribute their password and the
        values of their credential query parameters; the ticket webhook's URL is a secret whole.
        """
        secrets = self.secrets
        values = [
            s.get_secret_value()
            for s in (
                secrets.openai_api_key,
                secrets.slack_bot_token,
                secrets.slack_signing_secret,
                secrets.slack_app_token,
                secrets.discord_token,
                secrets.ticket_webhook_url,
                secrets.ticket_webhook_token,
                *secrets.web_tokens,
                *secrets.encryption_keys,
            )
            if s is not None
        ]
        for url in (self.store_url, secrets.openai_base_url or ""):
            values += _url_secrets(url)
        return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))

    @property
    def store_url(self) -> str:
        """The store to open: ``REDIS_URL`` when set, else ``memory.store_url``."""
        if self.secrets.redis_url is not None:
            return self.secrets.redis_url.get_secret_value()
        return self.memory.store_url

    def origin(self, section: str, key: str) -> str:
        """Where ``section.key`` got its value, for error messages: ``SUPPORTBOT_KB__PATH``, ``config.yaml: kb.path``
        or ``the default kb.path``. ``memory.store_url`` names ``REDIS_URL`` when that is what the store comes from."""
        if (section, key) == ("memory", "store_url") and self.secrets.redis_url is not None:
            return "REDIS_URL"
        return (self._origins or Origins()).of(section, key)

    @property
    def llm_configured(self) -> bool:
        """Whether an OpenAI-compatible model is selected (else the offline responder answers)."""
        if self.llm.provider == "offline":
            return False
        if self.llm.provider == "openai":
            return True
        return self.secrets.openai_api_key is not None or self.secrets.openai_base_url is not None


# Query parameters that carry a credential: ?password=…, ?token=…, a signed URL's signature.
_SECRET_PARAM = re.compile(
    r"pass(?:word|wd)?|pwd|secret|token|api[_-]?key|apikey|key|auth|credential|sig|signature|session|code"
    r"|x-amz-(?:signature|credential|security-token)",
    re.IGNORECASE,
)
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_URL_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_URL_QUERY_PARAM = re.compile(r"([?&;])([^=&#;\s]+)=([^&#;\s]*)")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``user:password@`` becomes ``***@``) and with the values of query parameters that
    carry credentials (``password``, ``token``, ``key``, ``sig``…) replaced by ``***``: fit for logs, banners and
    errors. Works on text that does not parse as a URL too."""
    url = _URL_USERINFO.sub(rf"\1{HIDDEN}@", url, count=1)

    def param(match: re.Match[str]) -> str:
        separator, name, value = match.groups()
        hidden = value and _SECRET_PARAM.fullmatch(name.rsplit(".", 1)[-1]) is not None
        return f"{separator}{name}={HIDDEN if hidden else value}"

    head, mark, rest = url.partition("?")
    return head + (_URL_QUERY_PARAM.sub(param, mark + rest) if mark else "")


def _url_secrets(url: str) -> list[str]:
    """The password and credential query values of ``url``, undecoded and percent-decoded."""
    found: list[str] = []
    userinfo = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@", url)
    if userinfo:
        found.append(userinfo.group(1).partition(":")[2] or userinfo.group(1))
    _, _, query = url.partition("?")
    for name, value in re.findall(r"(?:^|[&;])([^=&#;]+)=([^&#;]*)", query):
        if _SECRET_PARAM.fullmatch(name.rsplit(".", 1)[-1]):
            found.append(value)
    return found + [unquote(v) for v in found if unquote(v) != v]


def redact_urls(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


def _check_no_secrets(data: Any, path: str = "") -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in _SECRET_KEYS:
                raise ConfigError(f"{where}: secrets are read only from the environment; set {_SECRET_KEYS[key]}")
            _check_no_secrets(value, where)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    _check_no_secrets(data)
    return data


# Contract variables that set a (non-secret) key of the file.
_NAMED_OVERRIDES = {
    "SLACK_API_URL": ("slack", "api_url"),
    "DISCORD_API_URL": ("discord", "api_url"),
    "DISCORD_GATEWAY_URL": ("discord", "gateway_url"),
}


class Origins:
    """Which variable, or which key of which file, set each configuration key."""

    def __init__(
        self, *, env: Mapping[str, str] | None = None, file: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        self._variables: dict[str, str] = {}
        for name in env or {}:
            section, sep, key = name.lower().removeprefix("supportbot_").partition("__")
            if name.upper().startswith("SUPPORTBOT_") and sep and (env or {})[name].strip():
                self._variables[f"{section}.{key}"] = name
        for name, (section, key) in {**_NAMED_OVERRIDES, "PORT": ("server", "port")}.items():
            if (env or {}).get(name, "").strip():
                self._variables[f"{section}.{key}"] = name
        self._file = file
        self._data = data or {}

    def of(self, section: str, key: str) -> str:
        """``SUPPORTBOT_MEMORY__IDLE_TTL``, ``config.yaml: memory.idle_ttl`` or ``the default memory.idle_ttl``."""
        dotted = f"{section}.{key}" if key else section
        if dotted in self._variables:
            return self._variables[dotted]
        in_file = self._data.get(section)
        if self._file is not None and (not key or (isinstance(in_file, dict) and key in in_file)):
            return f"{self._file}: {dotted}"
        return f"the default {dotted}"

    def describe(self, error: ValidationError) -> str:
        """One line naming each bad key, where it was set, and the problem."""
        problems = []
        for err in error.errors():
            loc = [str(p) for p in err["loc"]]
            if not loc:
                problems.append(f"{self._file or 'config'}: {err['msg']}")
                continue
            where = self.of(loc[0], loc[1] if len(loc) > 1 else "")
            if len(loc) > 2:
                where += "." + ".".join(loc[2:])
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        return "; ".join(problems)


def _resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with the relative paths of the file (``kb.path``, ``sqlite:///relative.db``) made absolute from
    ``folder``, the file's own folder."""
    for section, key in (("kb", "path"), ("log", "chat_file")):
        values = data.get(section)
        if isinstance(values, dict) and isinstance(values.get(key), str) and values[key].strip():
            path = Path(values[key]).expanduser()
            data = _override(data, section, key, str(path if path.is_absolute() else folder / path))
    memory = data.get("memory")
    if isinstance(memory, dict) and isinstance(memory.get("store_url"), str):
        url = memory["store_url"]
        relative = url.removeprefix("sqlite:///")
        if url.startswith("sqlite:///") and relative and not relative.startswith("/") and relative != ":memory:":
            data = _override(data, "memory", "store_url", f"sqlite:///{folder / relative}")
    return data


def _override(data: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    current = data.get(section) or {}
    if not isinstance(current, dict):
        raise ConfigError(f"{section}: expected a mapping of keys")
    return {**data, section: {**current, key: value}}


def load_settings(path: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None) -> Settings:
    """Read the YAML config and the environment.

    Args:
        path: the YAML file; defaults to ``$SUPPORTBOT_CONFIG`` or ``config.yaml``. A missing default file is fine
            (defaults apply); a missing explicit file is an error.
        env: the environment to read (defaults to ``os.environ``).

    Raises:
        ConfigError: one line naming each bad key and its problem.
    """
    env = dict(os.environ if env is None else env)
    explicit = path is not None or bool(env.get("SUPPORTBOT_CONFIG"))
    config_path = Path(path if path is not None else env.get("SUPPORTBOT_CONFIG") or DEFAULT_CONFIG_PATH)
    has_file = explicit or config_path.exists()
    data = _read_yaml(config_path) if has_file else {}
    if "secrets" in data:
        raise ConfigError(f"{config_path}: secrets: secrets are read only from the environment")
    origins = Origins(env=env, file=str(config_path) if has_file else None, data=data)
    data = _resolve_paths(data, config_path.absolute().parent)
    redis_url = env.get("REDIS_URL", "").strip()
    if redis_url:
        try:
            check_store_url(redis_url, schemes=REDIS_SCHEMES)
        except ValueError as exc:
            raise ConfigError(f"REDIS_URL: {exc}") from None
    port = env.get("PORT", "").strip()
    if port:
        if not port.isdigit() or not 0 <= int(port) <= 65_535:
            raise ConfigError(f"PORT: expected a port number 0-65535, got {port!r}")
        data = _override(data, "server", "port", int(port))
    for variable, (section, key) in _NAMED_OVERRIDES.items():
        value = env.get(variable, "").strip()
        if value:
            data = _override(data, section, key, value)
    token = _ENVIRONMENT.set(env)
    try:
        settings = Settings(**data, secrets=Secrets.from_env(env))
    except ValidationError as exc:
        raise ConfigError(origins.describe(exc)) from None
    finally:
        _ENVIRONMENT.reset(token)
    settings._origins = origins
    return settings
