"""Settings: read from the environment (and `.env`) once, validated, frozen."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from dotenv import load_dotenv
from limits import parse_many

DEFAULT_API_URL = "https://api.siliconflow.cn/v1/chat/completions"
DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_SYSTEM_PROMPT = "你是一个友好、简洁、乐于助人的中文助手。"
HISTORY_PAGE_MAX = 500  # the most messages one GET /api/history returns
DEFAULT_SCHEDULED_PROMPT = "请给我发一条简短的提醒：喝水、活动一下，并用一句话鼓励我。"


class ConfigError(Exception):
    """A setting has a value the app cannot use; the message names it and the accepted form."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the app, typed; built by `load_settings`."""

    api_key: str = field(default="", repr=False)
    api_url: str = DEFAULT_API_URL
    model: str = DEFAULT_MODEL
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    retry_attempts: int = 3
    retry_max_seconds: float = 30.0

    context_max_messages: int = 20
    context_max_chars: int = 12000
    max_message_chars: int = 8000

    chat_history_file: Path = Path("data/chat_history.json")
    history_live_limit: int = 200
    history_page_size: int = 50

    scheduler_enabled: bool = True
    cron_second: str = "0"
    cron_minute: str = "0"
    cron_hour: str = "9"
    cron_day: str = "*"
    cron_month: str = "*"
    cron_day_of_week: str = "*"
    timezone: str = "UTC"
    scheduled_message_prompt: str = DEFAULT_SCHEDULED_PROMPT
    misfire_grace_seconds: int = 300

    dotenv_path: str = ".env"  # DOTENV_PATH: the file read above (and watched by the debug reloader)
    host: str = "0.0.0.0"
    port: int = 1342
    debug: bool = False
    log_level: str = "INFO"

    # Read by gunicorn.conf.py only.
    web_concurrency: int = 2
    gunicorn_threads: int = 128
    gunicorn_timeout: int = 120
    gunicorn_graceful_timeout: int = 30
    gunicorn_max_requests: int = 0

    access_token: str = field(default="", repr=False)
    rate_limit: str = ""
    trusted_proxies: int = 0
    max_body_bytes: int = 64 * 1024

    @property
    def chat_configured(self) -> bool:
        """Whether an API key is set, so chat calls can be made at all."""
        return bool(self.api_key)

    @property
    def data_dir(self) -> Path:
        """The folder that holds the history, its archives, and the scheduler's lock and state."""
        return self.chat_history_file.parent

    @property
    def cron(self) -> dict[str, str]:
        """The cron fields in APScheduler's names."""
        return {
            "second": self.cron_second,
            "minute": self.cron_minute,
            "hour": self.cron_hour,
            "day": self.cron_day,
            "month": self.cron_month,
            "day_of_week": self.cron_day_of_week,
        }

    def cron_trigger(self) -> CronTrigger:
        """The reminder schedule as an APScheduler trigger in the configured zone."""
        return CronTrigger(timezone=ZoneInfo(self.timezone), **self.cron)


def _local_zone_name() -> str:
    """The machine's IANA zone name, or UTC when it cannot be told."""
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # tzlocal raises several types on odd systems
        return "UTC"


class _Reader:
    """Reads and converts one variable at a time, naming it in every error."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value if value != "" else None

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def _convert(self, name: str, default: Any, convert: Callable[[str], Any], form: str) -> Any:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is invalid: expected {form}") from None

    def number(self, name: str, default: float, minimum: float = 0.001) -> float:
        def convert(value: str) -> float:
            number = float(value)
            if not number >= minimum or number == float("inf"):
                raise ValueError
            return number

        return self._convert(name, default, convert, f"a number of seconds ≥ {minimum:g}")

    def integer(self, name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        def convert(value: str) -> int:
            number = int(value)
            if number < minimum or (maximum is not None and number > maximum):
                raise ValueError
            return number

        upper = f" and ≤ {maximum}" if maximum is not None else ""
        return self._convert(name, default, convert, f"a whole number ≥ {minimum}{upper}")

    def boolean(self, name: str, default: bool) -> bool:
        truths = {"1", "true", "yes", "on"}
        falsities = {"0", "false", "no", "off"}

        def convert(value: str) -> bool:
            lowered = value.lower()
            if lowered in truths | falsities:
                return lowered in truths
            raise ValueError

        return self._convert(name, default, convert, "true or false")

    def url(self, name: str, default: str) -> str:
        def convert(value: str) -> str:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError
            return value

        return self._convert(name, default, convert, "an http:// or https:// URL, e.g. " + DEFAULT_API_URL)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from `environ` (default: the process environment after loading `.env`).

    `.env` never overrides a variable that is already set. Keyword overrides win over both;
    tests use them. Raises ConfigError with one line naming the bad variable.
    """
    if environ is None:
        load_dotenv(os.environ.get("DOTENV_PATH", ".env"), override=False)
        environ = os.environ
    read = _Reader(environ)
    dotenv_path = environ.get("DOTENV_PATH", ".env")

    values: dict[str, Any] = dict(
        dotenv_path=dotenv_path,
        api_key=read.text("API_KEY", ""),
        api_url=read.url("API_URL", DEFAULT_API_URL),
        model=read.text("MODEL", DEFAULT_MODEL),
        system_prompt=read.text("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
        connect_timeout=read.number("CONNECT_TIMEOUT", 10.0),
        read_timeout=read.number("READ_TIMEOUT", 120.0),
        retry_attempts=read.integer("RETRY_ATTEMPTS", 3, minimum=0, maximum=10),
        retry_max_seconds=read.number("RETRY_MAX_SECONDS", 30.0, minimum=0),
        context_max_messages=read.integer("CONTEXT_MAX_MESSAGES", 20, minimum=0),
        context_max_chars=read.integer("CONTEXT_MAX_CHARS", 12000, minimum=0),
        max_message_chars=read.integer("MAX_MESSAGE_CHARS", 8000),
        chat_history_file=Path(read.text("CHAT_HISTORY_FILE", "data/chat_history.json")),
        history_live_limit=read.integer("HISTORY_LIVE_LIMIT", 200, minimum=20),
        history_page_size=read.integer("HISTORY_PAGE_SIZE", 50, maximum=HISTORY_PAGE_MAX),
        scheduler_enabled=read.boolean("SCHEDULER_ENABLED", True),
        cron_second=read.text("CRON_SECOND", "0"),
        cron_minute=read.text("CRON_MINUTE", "0"),
        cron_hour=read.text("CRON_HOUR", "9"),
        cron_day=read.text("CRON_DAY", "*"),
        cron_month=read.text("CRON_MONTH", "*"),
        cron_day_of_week=read.text("CRON_DAY_OF_WEEK", "*"),
        timezone=read.text("TIMEZONE", "") or _local_zone_name(),
        scheduled_message_prompt=read.text("SCHEDULED_MESSAGE_PROMPT", DEFAULT_SCHEDULED_PROMPT),
        misfire_grace_seconds=read.integer("MISFIRE_GRACE_SECONDS", 300),
        host=read.text("HOST", "0.0.0.0"),
        port=read.integer("PORT", 1342, maximum=65535),
        debug=read.boolean("FLASK_DEBUG", False),
        log_level=read.text("LOG_LEVEL", "INFO").upper(),
        web_concurrency=read.integer("WEB_CONCURRENCY", 2, maximum=64),
        gunicorn_threads=read.integer("GUNICORN_THREADS", 128, maximum=4096),
        gunicorn_timeout=read.integer("GUNICORN_TIMEOUT", 120),
        gunicorn_graceful_timeout=read.integer("GUNICORN_GRACEFUL_TIMEOUT", 30),
        gunicorn_max_requests=read.integer("GUNICORN_MAX_REQUESTS", 0, minimum=0),
        access_token=read.text("ACCESS_TOKEN", ""),
        rate_limit=read.text("RATE_LIMIT", ""),
        trusted_proxies=read.integer("TRUSTED_PROXIES", 0, minimum=0, maximum=10),
        max_body_bytes=read.integer("MAX_BODY_BYTES", 64 * 1024, minimum=1024),
    )
    values.update(overrides)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    """Checks that need more than one field or a library: zone, cron, log level."""
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TIMEZONE={settings.timezone!r} is invalid: expected an IANA zone name such as Asia/Shanghai or UTC"
        ) from None
    for name, value in settings.cron.items():
        try:
            CronTrigger(**{name: value})
        except ValueError as error:
            raise ConfigError(
                f"CRON_{name.upper()}={value!r} is invalid: "
                f"expected a cron field such as *, 0, */5, 1-5 or mon-fri ({error})"
            ) from None
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL={settings.log_level!r} is invalid: expected DEBUG, INFO, WARNING or ERROR")
    if settings.rate_limit and not _valid_rate(settings.rate_limit):
        raise ConfigError(f"RATE_LIMIT={settings.rate_limit!r} is invalid: expected a rate such as 30/minute, "
                          "10 per minute;500/day, or nothing for no limit")


def _valid_rate(value: str) -> bool:
    """Whether `value` is a rate-limit string Flask-Limiter accepts, each rate allowing at least one call."""
    try:
        return all(item.amount >= 1 for item in parse_many(value))
    except ValueError:
        return False
