"""Settings: every variable from the environment or .env, validated once, one clear line on error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, declared_settings, load_settings, url_shown
from tests.support.servers import ROOT


def test_defaults_follow_the_spec():
    settings = load_settings({})
    assert settings.api_url == "https://api.siliconflow.cn/v1/chat/completions"
    assert settings.port == 1342
    assert settings.chat_history_file == Path("data/chat_history.json")
    assert settings.chat_configured is False


def test_api_key_is_not_in_the_settings_repr():
    settings = load_settings({"API_KEY": "sk-very-secret", "ACCESS_TOKEN": "tok-secret-0123456789"})
    assert "sk-very-secret" not in repr(settings)
    assert "tok-secret-0123456789" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("READ_TIMEOUT", "soon", "number of seconds"),
        ("CONNECT_TIMEOUT", "-1", "number of seconds"),
        ("PORT", "70000", "whole number"),
        ("API_URL", "api.siliconflow.cn/v1", "http:// or https:// URL"),
        ("API_URL", "http://127.0.0.1:port/v1", "http:// or https:// URL"),  # the upstream client reads the port
        ("CRON_HOUR", "25", "cron field"),
        ("CRON_DAY_OF_WEEK", "someday", "cron field"),
        ("TIMEZONE", "Mars/Olympus", "IANA zone"),
        ("SCHEDULER_ENABLED", "maybe", "true or false"),
        ("CONTEXT_MAX_MESSAGES", "many", "whole number"),
        ("GUNICORN_THREADS", "lots", "whole number"),
    ],
)
def test_bad_values_name_the_variable_and_the_accepted_form(variable, value, hint):
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}=")
    assert hint in message
    assert "\n" not in message


def test_a_bad_url_is_named_without_its_credentials_or_query():
    with pytest.raises(ConfigError) as raised:
        load_settings({"API_URL": "http://user:hunter2@127.0.0.1:port/v1?key=sk-secret"})
    message = str(raised.value)
    assert message.startswith("API_URL=") and "http:// or https:// URL" in message
    assert "hunter2" not in message and "sk-secret" not in message


def test_blank_values_count_as_unset():
    assert load_settings({item.env: "  " for item in declared_settings()}) == load_settings({})


@pytest.mark.parametrize(
    "declared", [item for item in declared_settings() if item.kind in (int, float)], ids=lambda item: item.env
)
def test_numbers_are_held_to_their_declared_bounds(declared):
    bounds = [declared.minimum] + ([declared.maximum] if declared.maximum is not None else [])
    for accepted in bounds:
        assert getattr(load_settings({declared.env: str(accepted)}), declared.attribute) == accepted
    refused = [declared.minimum - 1] + ([declared.maximum + 1] if declared.maximum is not None else [])
    for value in refused:
        with pytest.raises(ConfigError, match=f"^{declared.env}=.* is invalid: expected a (whole )?number"):
            load_settings({declared.env: str(value)})


def test_dotenv_is_read_and_the_real_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("MODEL=from-dotenv\nSYSTEM_PROMPT=来自 .env\n", encoding="utf-8")
    script = "from config import load_settings; s = load_settings(); print(s.model, s.system_prompt)"
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL", "SYSTEM_PROMPT")}
    env.update(MODEL="from-environment", DOTENV_PATH=str(tmp_path / ".env"), PYTHONPATH=str(ROOT))
    output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "from-environment 来自 .env"


def test_bad_value_stops_start_up_with_one_line_and_no_traceback(tmp_path):
    env = {**os.environ, "READ_TIMEOUT": "abc", "DOTENV_PATH": str(tmp_path / "none.env")}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Configuration error: READ_TIMEOUT='abc' is invalid: expected a number of seconds ≥ 0.001"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("memcached://127.0.0.1:11211", "memcached"),  # fixed windows only (and no client installed)
        ("carrier-pigeon://coop", "unknown storage scheme"),
        ("async+memory://", "no moving windows"),  # an asyncio storage, not usable here
    ],
)
def test_rate_limit_storage_must_be_a_limits_storage_with_moving_windows(uri, problem):
    with pytest.raises(ConfigError, match=r"^RATE_LIMIT_STORAGE=.* is invalid \(.*") as raised:
        load_settings({"RATE_LIMIT_STORAGE": uri})
    assert problem in str(raised.value) and "redis://host:6379" in str(raised.value)


def test_rate_limit_storage_accepts_redis_and_memory_without_contacting_them():
    for uri in ("redis://127.0.0.1:1/0", "rediss://:pw@cache.example:6380", "memory://"):
        assert load_settings({"RATE_LIMIT_STORAGE": uri}).rate_limit_storage == uri


def test_a_rate_limit_storage_password_stays_out_of_errors_and_repr():
    with pytest.raises(ConfigError) as raised:
        load_settings({"RATE_LIMIT_STORAGE": "memcached://user:hunter2@127.0.0.1:11211?password=sk-2"})
    assert "hunter2" not in str(raised.value) and "sk-2" not in str(raised.value)
    assert "hunter2" not in repr(load_settings({"RATE_LIMIT_STORAGE": "redis://:hunter2@127.0.0.1:6379"}))


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("reddis://:hunter2@host:6379", "reddis://host:6379"),  # an unknown scheme: the library quotes the URI
        ("redis://:hunter2@[::1", "redis://…"),  # no closing bracket: urlsplit raises ValueError
        ("redis://:hunter2@host:port", "redis://host:port"),  # the library quotes the port it cannot read
        ("redis://:hun/ter2@host:6379", "redis://…"),  # a "/" in the password ends the host for urlsplit
    ],
)
def test_a_bad_rate_limit_storage_stops_start_up_with_one_line_and_no_password(tmp_path, uri, shown):
    env = {**os.environ, "RATE_LIMIT_STORAGE": uri, "DOTENV_PATH": str(tmp_path / "none.env")}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Configuration error: RATE_LIMIT_STORAGE={shown!r} is invalid (")
    assert "hunter2" not in line and "ter2" not in line  # not even a piece of it


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.com/v1/chat/completions", "https://api.example.com/v1/chat/completions"),
        ("http://user:hunter2@127.0.0.1:8080/v1?key=sk-secret", "http://127.0.0.1:8080/v1?…"),
        ("rediss://:hunter2@[::1]:6380/0", "rediss://[::1]:6380/0"),
        ("redis://:p@ss@cache:6379", "redis://cache:6379"),  # urlsplit too takes the last @
        ("redis://:hunter2@[::1", "redis://…"),
        ("redis://:hunt?er2@cache:6379", "redis://…"),  # the password's "?" starts a query for urlsplit
        ("hunter2", "…"),
    ],
)
def test_url_shown_keeps_credentials_and_query_out_whatever_the_url(url, shown):
    assert url_shown(url) == shown
