"""Settings: each declared once as a `Settings` field, read from the environment (and `.env`), validated, frozen."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from dotenv import load_dotenv
from limits import parse_many
from limits.errors import ConfigurationError
from limits.storage import MovingWindowSupport, Storage, storage_from_string

from cron import WEEKDAY_FORM, WallClockTrigger, crontab_weekdays

DEFAULT_API_URL = "https://api.siliconflow.cn/v1/chat/completions"
DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_SYSTEM_PROMPT = "你是一个友好、简洁、乐于助人的中文助手。"
HISTORY_PAGE_MAX = 500  # the most messages one GET /api/history returns
DEFAULT_SCHEDULED_PROMPT = "请给我发一条简短的提醒：喝水、活动一下，并用一句话鼓励我。"

# Whole numbers count from 1 and seconds from 1 ms unless a setting declares its own minimum.
_DEFAULT_MINIMUM: dict[type, float] = {int: 1, float: 0.001}
_TRUTHS = frozenset({"1", "true", "yes", "on"})
_FALSITIES = frozenset({"0", "false", "no", "off"})


class ConfigError(Exception):
    """A setting has a value the app cannot use; the message names it and the accepted form."""


def setting(
    default: Any,
    *,
    env: str,
    help: str,
    minimum: float | None = None,
    maximum: float | None = None,
    parse: Callable[[str], Any] | None = None,
    form: str = "",
    when_unset: Callable[[], Any] | None = None,
    secret: bool = False,
) -> Any:
    """A `Settings` field read from the variable `env`; `parse` and `form` replace the conversion its type implies."""
    metadata = dict(env=env, help=help, minimum=minimum, maximum=maximum, parse=parse, form=form, when_unset=when_unset)
    return field(default=default, repr=not secret, metadata=metadata)


def _local_zone_name() -> str:
    """The machine's IANA zone name, or UTC when it cannot be told."""
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # tzlocal raises several types on odd systems
        return "UTC"


ACCESS_TOKEN_MIN_CHARS = 16


def _access_token(value: str) -> str:
    """`value` unchanged if it is long enough to be a token nobody guesses; ValueError otherwise."""
    if len(value) < ACCESS_TOKEN_MIN_CHARS:
        raise ValueError("too short")
    return value


def _seconds_list(value: str) -> str:
    """`value` normalised if it is comma-separated positive numbers of seconds; ValueError otherwise."""
    numbers = [float(item) for item in value.split(",")]
    if numbers == [0]:
        return "0"  # one try only
    if not all(0 < number <= 86400 for number in numbers) or len(numbers) > 10:
        raise ValueError(value)
    return ",".join(_number_text(number) for number in numbers)


def _http_url(value: str) -> str:
    """`value` unchanged if it is an http(s) URL with a host; ValueError otherwise."""
    parts = urlsplit(value)
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(value)
    return value


def _push_contact(value: str) -> str:
    """`value` unchanged if push services accept it as the VAPID `sub` (a mailto: address or an https URL)."""
    if not re.fullmatch(r"mailto:[^@\s]+@[^@\s]+|https://[^/\s]+\S*", value):
        raise ValueError(value)
    return value


@dataclass(frozen=True)
class Settings:
    """Every knob of the app, typed; built by `load_settings`."""

    api_key: str = setting(
        "", env="API_KEY", secret=True, help="API key of the model service; chat answers 503 without it."
    )
    api_url: str = setting(
        DEFAULT_API_URL,
        env="API_URL",
        parse=_http_url,
        form="an http:// or https:// URL, e.g. " + DEFAULT_API_URL,
        help="OpenAI-compatible chat completions URL, or its base URL such as https://host/v1.",
    )
    model: str = setting(DEFAULT_MODEL, env="MODEL", help="Model name sent with every request.")
    system_prompt: str = setting(
        DEFAULT_SYSTEM_PROMPT, env="SYSTEM_PROMPT", help="System prompt sent first with every request."
    )

    connect_timeout: float = setting(
        10.0, env="CONNECT_TIMEOUT", help="Seconds to wait for a connection to the model API."
    )
    read_timeout: float = setting(
        120.0, env="READ_TIMEOUT", help="Longest silence, in seconds, while waiting for the model's data."
    )
    retry_attempts: int = setting(
        3,
        env="RETRY_ATTEMPTS",
        minimum=0,
        maximum=10,
        help="Retries on 429, 500, 502, 503, 504 and connection errors (0 = none).",
    )
    retry_max_seconds: float = setting(
        30.0,
        env="RETRY_MAX_SECONDS",
        minimum=0,
        help="No retry starts later than this many seconds after the first attempt.",
    )

    context_max_messages: int = setting(
        20, env="CONTEXT_MAX_MESSAGES", minimum=0, help="Most recent messages sent as context."
    )
    context_max_chars: int = setting(
        12000, env="CONTEXT_MAX_CHARS", minimum=0, help="Character budget of that context."
    )
    max_message_chars: int = setting(
        8000, env="MAX_MESSAGE_CHARS", help="Longest accepted user message, in characters."
    )

    chat_history_file: Path = setting(
        Path("data/chat_history.json"),
        env="CHAT_HISTORY_FILE",
        help="Its folder is the data folder (conversations/, locks, state); the file itself is migrated.",
    )
    history_live_limit: int = setting(
        200,
        env="HISTORY_LIVE_LIMIT",
        minimum=20,
        help="Messages kept in each conversation's log; older ones roll into archive files.",
    )
    history_page_size: int = setting(
        50, env="HISTORY_PAGE_SIZE", maximum=HISTORY_PAGE_MAX, help="Default page size of GET /api/history."
    )

    scheduler_enabled: bool = setting(True, env="SCHEDULER_ENABLED", help="Whether scheduled reminders are sent.")
    cron_second: str = setting("0", env="CRON_SECOND", help="Cron second field of the reminder schedule.")
    cron_minute: str = setting("0", env="CRON_MINUTE", help="Cron minute field of the reminder schedule.")
    cron_hour: str = setting("9", env="CRON_HOUR", help="Cron hour field of the reminder schedule.")
    cron_day: str = setting("*", env="CRON_DAY", help="Cron day-of-month field of the reminder schedule.")
    cron_month: str = setting("*", env="CRON_MONTH", help="Cron month field of the reminder schedule.")
    cron_day_of_week: str = setting(
        "*", env="CRON_DAY_OF_WEEK", help="Cron day-of-week field of the reminder schedule; 0 and 7 are Sunday."
    )
    timezone: str = setting(
        "UTC",
        env="TIMEZONE",
        when_unset=_local_zone_name,
        help="IANA zone of reminders and timestamps; empty means the machine's local zone.",
    )
    scheduled_message_prompt: str = setting(
        DEFAULT_SCHEDULED_PROMPT, env="SCHEDULED_MESSAGE_PROMPT", help="Prompt sent to the model for each reminder."
    )
    misfire_grace_seconds: int = setting(
        300,
        env="MISFIRE_GRACE_SECONDS",
        maximum=86400,  # a missed reminder is found by stepping through its occurrences since: keep that short
        help="How late, in seconds, a missed reminder may still be sent.",
    )
    reminder_tools: bool = setting(
        True, env="REMINDER_TOOLS", help="Whether chat offers the model tools to set reminders (else a phrase grammar)."
    )
    notify_urls: str = setting(
        "",
        env="NOTIFY_URLS",
        secret=True,  # the URLs carry tokens
        help="Apprise URLs, space or comma separated, that every reminder is also pushed to.",
    )
    push_retry_seconds: str = setting(
        "30,120,600",
        env="PUSH_RETRY_SECONDS",
        parse=_seconds_list,
        form="seconds between the tries of a failed push, comma separated, e.g. 30,120,600, or 0 for one try only",
        help="Seconds between the tries of a push a channel refused; one more try per number.",
    )
    push_timeout: float = setting(10.0, env="PUSH_TIMEOUT", help="Seconds one push to one channel may take.")

    # Only the real environment can set it: it names the file the rest may come from (and the debug reloader watches).
    dotenv_path: str = setting(".env", env="DOTENV_PATH", help="The .env file read at start-up.")
    # Loopback by default: Gunicorn facing the network directly falls to slow clients (slowloris);
    # nginx in front absorbs them. The Docker image sets 0.0.0.0 inside its container.
    host: str = setting(
        "127.0.0.1", env="HOST", help="Address to listen on; 127.0.0.1 lets only this machine (nginx) connect."
    )
    port: int = setting(1342, env="PORT", maximum=65535, help="Port to listen on.")
    debug: bool = setting(
        False, env="FLASK_DEBUG", help="Development mode of python app.py (reloader); keep false in production."
    )
    log_level: str = setting("INFO", env="LOG_LEVEL", parse=str.upper, help="Log level: DEBUG, INFO, WARNING or ERROR.")

    # Read by gunicorn.conf.py only.
    web_concurrency: int = setting(2, env="WEB_CONCURRENCY", maximum=64, help="Gunicorn worker processes.")
    gunicorn_threads: int = setting(128, env="GUNICORN_THREADS", maximum=4096, help="Threads per Gunicorn worker.")
    gunicorn_timeout: int = setting(120, env="GUNICORN_TIMEOUT", help="Gunicorn worker heartbeat timeout in seconds.")
    gunicorn_graceful_timeout: int = setting(
        30, env="GUNICORN_GRACEFUL_TIMEOUT", help="Seconds a graceful restart waits for requests in progress."
    )
    gunicorn_max_requests: int = setting(
        0, env="GUNICORN_MAX_REQUESTS", minimum=0, help="Recycle a worker after this many requests (0 = never)."
    )

    access_token: str = setting(
        "",
        env="ACCESS_TOKEN",
        secret=True,
        parse=_access_token,
        form=f"at least {ACCESS_TOKEN_MIN_CHARS} characters, e.g. from "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))', or nothing for no token",
        help=f"Access token (at least {ACCESS_TOKEN_MIN_CHARS} characters); "
        "set it before the app is reachable from the internet.",
    )
    rate_limit: str = setting(
        "", env="RATE_LIMIT", help="Per-client chat rate limit such as 30/minute; empty means none."
    )
    rate_limit_storage: str = setting(
        "",
        env="RATE_LIMIT_STORAGE",
        secret=True,  # a Redis URI may hold a password
        help="Storage URI of rate-limit counts such as redis://host:6379; empty means a file in the data folder.",
    )
    trusted_proxies: int = setting(
        0,
        env="TRUSTED_PROXIES",
        minimum=0,
        maximum=10,
        help="Reverse proxies in front whose X-Forwarded-For is trusted (1 for nginx).",
    )
    max_body_bytes: int = setting(
        64 * 1024, env="MAX_BODY_BYTES", minimum=1024, help="Largest accepted request body in bytes."
    )
    import_max_bytes: int = setting(
        64 * 1024 * 1024,
        env="IMPORT_MAX_BYTES",
        minimum=1024,
        help="Largest accepted import (POST /api/import) in bytes.",
    )
    push_contact: str = setting(
        "mailto:admin@localhost",
        env="PUSH_CONTACT",
        parse=_push_contact,
        form="a mailto: address or an https:// URL, e.g. mailto:you@example.com",
        help="Contact sent to browser push services with each push (mailto: or https URL).",
    )

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

    @property
    def notify_url_list(self) -> tuple[str, ...]:
        # A comma separates URLs only before the next scheme: one inside a URL (?to=a,b, a password) stays.
        return tuple(url for url in re.split(r"\s+|,(?=\s*[a-z][a-z0-9+.-]*://)", self.notify_urls) if url)

    @property
    def push_retries(self) -> tuple[float, ...]:
        return tuple(float(item) for item in self.push_retry_seconds.split(",") if float(item) > 0)

    def cron_trigger(self) -> WallClockTrigger:
        """The reminder schedule as an APScheduler trigger on the configured zone's wall clock, weekdays numbered
        as in crontab."""
        return WallClockTrigger(self.cron, ZoneInfo(self.timezone))


@dataclass(frozen=True)
class DeclaredSetting:
    """One variable as a `Settings` field declares it: what the loader, tests and docs work from."""

    attribute: str
    env: str
    kind: type
    default: Any
    help: str
    minimum: float | None
    maximum: float | None
    parse: Callable[[str], Any] | None
    form: str
    when_unset: Callable[[], Any] | None
    secret: bool

    @property
    def default_text(self) -> str:
        """The default as `.env` spells it: true/false, 10 rather than 10.0."""
        if self.kind is bool:
            return "true" if self.default else "false"
        return _number_text(self.default) if self.kind in (int, float) else str(self.default)

    @property
    def accepted_form(self) -> str:
        """What a ConfigError says the value should look like."""
        if self.form:
            return self.form
        if self.kind is bool:
            return "true or false"
        bounds = f"≥ {_number_text(self.minimum)}"
        if self.maximum is not None:
            bounds += f" and ≤ {_number_text(self.maximum)}"
        if self.kind is int:
            return f"a whole number {bounds}"
        if self.kind is float:
            return f"a number of seconds {bounds}"
        return "text"

    def convert(self, text: str) -> Any:
        """The typed value of a non-blank `text`; ValueError when it is not of the accepted form."""
        if self.parse is not None:
            return self.parse(text)
        if self.kind is bool:
            lowered = text.lower()
            if lowered not in _TRUTHS | _FALSITIES:
                raise ValueError(text)
            return lowered in _TRUTHS
        if self.kind in (int, float):
            number = self.kind(text)
            above = number == float("inf") or (self.maximum is not None and number > self.maximum)
            if not number >= self.minimum or above:  # `not >=` also refuses NaN
                raise ValueError(text)
            return number
        return self.kind(text)  # str or Path


def _number_text(number: float) -> str:
    """10 for 10.0, 0.001 for 0.001: numbers as people write them in `.env` and messages."""
    return f"{number:g}" if isinstance(number, float) else str(number)


def declared_settings() -> list[DeclaredSetting]:
    """Every setting a variable sets, in declaration order; fields not made by `setting()` have no variable."""
    kinds = get_type_hints(Settings)
    declared = []
    for spec in fields(Settings):
        if "env" not in spec.metadata:
            continue
        kind = kinds[spec.name]
        minimum = spec.metadata["minimum"]
        declared.append(
            DeclaredSetting(
                attribute=spec.name,
                kind=kind,
                default=spec.default,
                secret=not spec.repr,
                **{**spec.metadata, "minimum": _DEFAULT_MINIMUM.get(kind) if minimum is None else minimum},
            )
        )
    return declared


def _read(declared: DeclaredSetting, environ: Mapping[str, str]) -> Any:
    """One variable's typed value; blank counts as unset, and a bad value raises ConfigError naming it."""
    text = (environ.get(declared.env) or "").strip()
    if not text:
        return declared.when_unset() if declared.when_unset else declared.default
    try:
        return declared.convert(text)
    except ValueError:
        # A secret stays out of the log, and so do a URL's credentials and query (API_URL may carry ?key=).
        printable = url_shown(text) if "://" in text else text
        shown = f" ({len(text)} characters)" if declared.secret else f"={printable!r}"
        raise ConfigError(f"{declared.env}{shown} is invalid: expected {declared.accepted_form}") from None


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from `environ` (default: the process environment after loading `.env`).

    `.env` never overrides a variable that is already set. Keyword overrides win over both;
    tests use them. Raises ConfigError with one line naming the bad variable.
    """
    declared = {item.attribute: item for item in declared_settings()}
    if environ is None:
        environ = os.environ
        dotenv_path = _read(declared["dotenv_path"], environ)
        load_dotenv(dotenv_path, override=False)
        # The file actually read, even if it names another one itself.
        overrides = {"dotenv_path": dotenv_path, **overrides}
    values = {attribute: _read(item, environ) for attribute, item in declared.items()}
    values.update(overrides)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    """Checks that need more than one field or a library: zone, cron, log level, rate limit and its storage."""
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TIMEZONE={settings.timezone!r} is invalid: expected an IANA zone name such as Asia/Shanghai or UTC"
        ) from None
    for name, value in settings.cron.items():
        try:
            CronTrigger(**{name: crontab_weekdays(value) if name == "day_of_week" else value})
        except ValueError as error:
            form = WEEKDAY_FORM if name == "day_of_week" else "a cron field such as *, 0, */5, 1-5 or 0,30"
            raise ConfigError(f"CRON_{name.upper()}={value!r} is invalid: expected {form} ({error})") from None
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL={settings.log_level!r} is invalid: expected DEBUG, INFO, WARNING or ERROR")
    if settings.rate_limit and not _valid_rate(settings.rate_limit):
        raise ConfigError(
            f"RATE_LIMIT={settings.rate_limit!r} is invalid: expected a rate such as 30/minute, "
            "10 per minute;500/day, or nothing for no limit"
        )
    if settings.rate_limit_storage and (problem := _storage_problem(settings.rate_limit_storage)):
        raise ConfigError(
            f"RATE_LIMIT_STORAGE={url_shown(settings.rate_limit_storage)!r} is invalid ({problem}): "
            "expected a limits storage URI with moving windows such as redis://host:6379, rediss://…, "
            "redis+sentinel://…, memory:// (per process), or nothing for a file in the data folder"
        )


def _valid_rate(value: str) -> bool:
    """Whether `value` is a rate-limit string the limits library accepts, each rate allowing at least one call."""
    try:
        return all(item.amount >= 1 for item in parse_many(value))
    except ValueError:
        return False


def _storage_problem(uri: str) -> str | None:
    """Why `uri` names no `limits` storage with moving windows, or None when it does (nothing is contacted).

    The library's own words may quote the URI, password and all: they are given with `url_shown`'s
    version of it, and not at all if they still hold a part of its credentials or query.
    """
    try:
        storage = storage_from_string(uri)
    except ConfigurationError as error:  # unknown scheme, missing client
        problem = str(error).replace(uri, url_shown(uri)) or "ConfigurationError"
        return "refused by the limits library" if _reveals_secrets(problem, uri) else problem
    except (ValueError, TypeError):  # a port that is not a number, a broken IPv6 address: the words quote them
        return "not a valid URI"
    if not isinstance(storage, Storage) or not isinstance(storage, MovingWindowSupport):
        return "this storage has no moving windows"
    return None


def _reveals_secrets(text: str, url: str) -> bool:
    """Whether `text` holds the user:password or the query of `url`, or a piece of either."""
    after_scheme = url.partition("://")[2]
    secrets = re.split(r"[:/?&=;#]", after_scheme.rpartition("@")[0]) + re.split(r"[&=;#]", url.partition("?")[2])
    return any(secret in text for secret in secrets if secret)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def url_shown(url: str) -> str:
    """`url` fit for messages and logs: no user:password@ part, a query (it may hold a key) only as `?…`.

    A URL that does not parse, or whose credentials did not parse as such (a password with `/`, `?`
    or `#` in it), is shown as its scheme and `…` alone.
    """
    scheme, has_scheme, _ = url.partition("://")
    if not has_scheme or not _SCHEME.fullmatch(scheme):  # not a URL at all: nothing of it is safe to show
        return "…"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an IPv6 address without its closing bracket
        return f"{scheme}://…"
    if "@" in url and "@" not in parts.netloc:
        return f"{scheme}://…"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")
