"""Configuration: YAML, environment overrides, secrets only from the environment, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.config import Settings, load_settings, redact_url
from bot.errors import ConfigError
from bot.session import Scope

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_config_is_valid_complete_and_every_key_is_commented() -> None:
    settings = load_settings(REPO / "config.yaml", env={})
    assert settings.memory.store_url == f"sqlite:///{REPO}/data/supportbot.db", "relative to the file's folder"
    assert settings.kb.path is None, "the sample articles shipped in the package"
    assert settings.memory.idle_ttl == 7 * 86_400
    text = (REPO / "config.yaml").read_text()
    data = yaml.safe_load(text)
    for section, model in Settings.model_fields.items():
        if section == "secrets":
            continue
        assert model.annotation is not None
        assert set(data[section]) == set(model.annotation.model_fields), f"config.yaml lists every {section} key"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s+[a-z_]+:", line):
            assert lines[i - 1].lstrip().startswith("#"), f"config.yaml line {i + 1} has no comment: {line!r}"


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "memory:\n  scope: thread\n  idle_ttl: 1h\nserver:\n  port: 9000\n")
    settings = load_settings(path, env={"SUPPORTBOT_MEMORY__IDLE_TTL": "30m", "PORT": "7001"})
    assert settings.memory.scope is Scope.THREAD
    assert settings.memory.idle_ttl == 1_800
    assert settings.server.port == 7001


def test_redis_url_selects_redis_and_is_redacted() -> None:
    settings = load_settings("/dev/null", env={"REDIS_URL": "redis://:hunter2@cache:6379/0"})
    assert settings.store_url == "redis://:hunter2@cache:6379/0"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert redact_url(settings.store_url) == "redis://***@cache:6379/0"


def test_llm_is_configured_by_key_or_base_url_only() -> None:
    assert not load_settings("/dev/null", env={}).llm_configured
    assert load_settings("/dev/null", env={"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}).llm_configured
    keyed = load_settings("/dev/null", env={"OPENAI_API_KEY": "sk-secret"})
    assert keyed.llm_configured and "sk-secret" not in repr(keyed)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("memory:\n  idle_ttl: soon\n", "config.yaml: memory.idle_ttl: expected a duration"),
        ("memory:\n  store_url: postgres://db\n", "config.yaml: memory.store_url: expected a memory://"),
        ("memory:\n  scope: everyone\n", "memory.scope: Input should be 'thread_user', 'thread' or 'channel_user'"),
        ("memory:\n  windw_messages: 3\n", "memory.windw_messages: unknown key"),
        ("llm:\n  api_key: sk-123\n", "llm.api_key: secrets are read only from the environment; set OPENAI_API_KEY"),
        ("memory: [1, 2\n", "not valid YAML (line 2)"),
        ("- just a list\n", "the top level must be a mapping"),
    ],
)
def test_invalid_config_names_the_key_and_the_problem(tmp_path: Path, yaml_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, yaml_text), env={})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "sk-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SUPPORTBOT_MEMORY__IDLE_TTL": "banana"}, "SUPPORTBOT_MEMORY__IDLE_TTL: expected a duration"),
        ({"SUPPORTBOT_MEMORY__WINDW_MESSAGES": "3"}, "SUPPORTBOT_MEMORY__WINDW_MESSAGES: unknown key"),
        (
            {"REDIS_URL": "http://:hunter2@cache"},
            "REDIS_URL: expected a redis://, rediss://, unix:// or redis+cluster://",
        ),
        ({"SLACK_API_URL": "x", "SUPPORTBOT_SLACK__COMMAND": "help"}, "SUPPORTBOT_SLACK__COMMAND: String should match"),
    ],
)
def test_a_bad_variable_is_blamed_not_the_file(tmp_path: Path, env: dict[str, str], message: str) -> None:
    path = write(tmp_path, "memory:\n  idle_ttl: 1h\n  window_messages: 5\nslack:\n  command: /helpdesk\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env)
    assert str(caught.value).startswith(message)
    assert "config.yaml" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_relative_paths_in_the_file_are_taken_from_its_folder_and_in_the_environment_from_the_cwd(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "memory:\n  store_url: sqlite:///db/s.db\nkb:\n  path: articles\nlog:\n  chat_file: c.log\n")
    settings = load_settings(path, env={})
    assert settings.memory.store_url == f"sqlite:///{tmp_path}/db/s.db"
    assert settings.kb.path == str(tmp_path / "articles") and settings.log.chat_file == str(tmp_path / "c.log")
    assert settings.origin("kb", "path") == f"{path}: kb.path"
    absolute = write(tmp_path, "memory:\n  store_url: sqlite:////var/s.db\n")
    assert load_settings(absolute, env={}).memory.store_url == "sqlite:////var/s.db"
    overridden = load_settings(path, env={"SUPPORTBOT_KB__PATH": "mine"})
    assert overridden.kb.path == "mine" and overridden.origin("kb", "path") == "SUPPORTBOT_KB__PATH"


def test_without_a_store_url_sessions_live_in_the_users_data_folder(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "{}\n"), env={"XDG_DATA_HOME": str(tmp_path / "share")})
    assert settings.store_url == f"sqlite:///{tmp_path}/share/supportbot/supportbot.db"
    assert settings.origin("memory", "store_url") == "the default memory.store_url"


def test_a_missing_explicit_config_is_an_error_but_a_missing_default_is_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_settings(tmp_path / "nope.yaml", env={})
    settings = load_settings(env={"SUPPORTBOT_CONFIG": ""})
    assert settings.memory.scope is Scope.THREAD_USER


@pytest.mark.parametrize("port", ["http", "70000", "-1"])
def test_a_bad_port_is_refused(port: str) -> None:
    with pytest.raises(ConfigError, match="PORT"):
        load_settings("/dev/null", env={"PORT": port})


def test_an_encryption_key_turns_on_encryption_and_a_bad_one_is_a_config_error(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from bot.app import build_store
    from bot.memory.sqlite import SqliteStore

    store_url = f"sqlite:///{tmp_path / 'x.db'}"
    good = load_settings("/dev/null", env={"SUPPORTBOT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                                           "SUPPORTBOT_MEMORY__STORE_URL": store_url})  # fmt: skip
    assert "SecretStr('**********')" in repr(good.secrets.encryption_keys)
    store = build_store(good)
    assert isinstance(store, SqliteStore) and type(store._codec).__name__ == "EncryptedCodec"
    bad = load_settings(
        "/dev/null", env={"SUPPORTBOT_ENCRYPTION_KEY": "not-a-key", "SUPPORTBOT_MEMORY__STORE_URL": store_url}
    )
    with pytest.raises(ConfigError, match="SUPPORTBOT_ENCRYPTION_KEY: .*Fernet keys"):
        build_store(bad)
