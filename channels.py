"""Where reminders go besides the conversation: notification channels, each an Apprise URL.

Apprise (https://github.com/caronc/apprise) speaks WeCom (`wecombot://`), DingTalk, Feishu, Bark, ntfy, ServerChan,
PushPlus, Telegram, email, plain webhooks (`json://`) and more, so no service's HTTP client is written here. Channels
from NOTIFY_URLS are read-only (ids `env-1`, `env-2` …); the rest live in `data/channels.json`, written atomically
(mkstemp makes it 0600: the URLs hold tokens). Browser push subscriptions (webpush.py) are channels too, ids `push-<n>`.

A channel URL is a secret. Outside this module it is shown `masked()`: scheme and host only, and not even the host
when it may be a token (`wecombot://•••`). What a service answered is scrubbed of the URL's parts before
anyone sees it, and Apprise's own log, which prints URLs, never reaches the app's log.

Apprise is imported only when a URL is checked or a message sent: loading its plugins costs ~18 MB, which a worker
that never touches a channel should not pay.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from config import Settings
from errors import BadRequest, Conflict, NotFound, StorageError
from history_store import changing_json
from push_outbox import Pusher, PushOutbox

log = logging.getLogger(__name__)

MAX_CHANNELS = 50
MAX_NAME_CHARS = 60
HIDDEN = "•••"
TEST_TITLE = "⏰ 测试 · Test"
TEST_BODY = "这是一条测试提醒：这个通道可以收到提醒了。 This is a test: reminders will reach this channel."
_answers = threading.local()  # the lines Apprise logs while this thread sends


class _AnswerCapture(logging.Handler):
    """Keeps what Apprise says about a send for the thread that sends it (INFO and up: DEBUG lines print URLs)."""

    def emit(self, record: logging.LogRecord) -> None:
        lines = getattr(_answers, "lines", None)
        if lines is not None:
            lines.append(record.getMessage())


def _apprise() -> Any:
    import apprise  # noqa: PLC0415 - see the module docstring

    apprise_log = logging.getLogger("apprise")
    if not any(isinstance(handler, _AnswerCapture) for handler in apprise_log.handlers):
        apprise_log.addHandler(_AnswerCapture(logging.INFO))
        apprise_log.setLevel(logging.INFO)
        apprise_log.propagate = False  # its lines carry URLs with tokens
    return apprise


def notifier(url: str) -> Any:
    """Apprise's plugin for `url`; 400 `invalid_channel_url` with one sentence when Apprise cannot use it."""
    if not isinstance(url, str) or "://" not in url or len(url) > 2000:
        raise BadRequest(
            '"url" must be an Apprise URL such as bark://api.day.app/KEY, ntfys://ntfy.sh/TOPIC or wecombot://KEY.',
            code="invalid_channel_url",
        )
    plugin = _apprise().Apprise.instantiate(url.strip(), suppress_exceptions=True)
    if not plugin:
        scheme = url.split("://", 1)[0]
        named = f"scheme {scheme!r}" if SCHEME.fullmatch(scheme) else "an unknown scheme"  # never a password
        raise BadRequest(
            f'"url" is not a channel Apprise can send to ({named}, or its tokens are missing or malformed); '
            "see https://github.com/caronc/apprise/wiki for each service's form.",
            code="invalid_channel_url",
        )
    return plugin


SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,19}")
# Services whose "host" is the token itself: never shown, whatever it looks like.
TOKEN_HOSTS = frozenset({"dingtalk", "feishu", "lark", "pushplus", "schan", "wecombot", "tgram", "wxpusher"})


def masked(url: str) -> str:
    """`url` as anyone may see it: scheme and host, the host hidden when it is a token (as for wecombot://KEY)."""
    scheme, _, rest = url.partition("://")
    if not SCHEME.fullmatch(scheme):
        return HIDDEN
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        host, port = "", None
    if scheme in TOKEN_HOSTS or not _looks_like_a_host(host):
        return f"{scheme}://{HIDDEN}"
    return f"{scheme}://{host}{f':{port}' if port else ''}/{HIDDEN}" if parts.path.strip("/") else f"{scheme}://{host}"


def _looks_like_a_host(host: str) -> bool:
    """An IP address, localhost or a dotted name ending in a word (api.day.app); anything else may be a token."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    labels = host.split(".")
    return host == "localhost" or (
        len(labels) > 1
        and all(re.fullmatch(r"[a-z0-9-]{1,63}", label) for label in labels)
        and re.fullmatch(r"[a-z][a-z-]*", labels[-1]) is not None
    )


def scrub(text: str, url: str) -> str:
    """`text` without any part of `url` that may be a secret (tokens, user, password, path, query values)."""
    shown = masked(url)
    parts = set(re.split(r"[/:@?&=#,]+", url.split("://", 1)[-1]))
    parts |= {unquote(part) for part in parts}  # a service may answer with the decoded form
    for part in sorted(parts, key=len, reverse=True):
        if len(part) >= 4 and part not in shown:
            text = text.replace(part, HIDDEN)
    return text


def send_apprise(url: str, title: str, body: str, timeout: float) -> tuple[bool, str]:
    """Send one message through Apprise: (delivered, what the service said, scrubbed); never raises."""
    _answers.lines = []
    try:
        plugin = notifier(url)
        plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
        delivered = bool(plugin.notify(body=body, title=title))
    except Exception as error:  # a plugin bug must not cost the other channels; the type is enough to look into it
        delivered, _answers.lines = False, [f"Apprise failed: {type(error).__name__}"]
    finally:
        lines, _answers.lines = _answers.lines, None
    answer = lines[-1] if lines else ("Sent." if delivered else "Not sent; the service gave no reason.")
    return delivered, scrub(answer, url)[:300]


class ChannelStore:
    """The channels from NOTIFY_URLS and those added through the API."""

    def __init__(self, data_dir: Path, env_urls: tuple[str, ...] = ()):
        self.path = data_dir / "channels.json"
        self.lock_path = data_dir / "channels.json.lock"
        self.env_urls = env_urls

    def env_channels(self) -> list[dict[str, Any]]:
        return [
            {"id": f"env-{number}", "name": f"NOTIFY_URLS #{number}", "url": url, "source": "env", "created_at": None}
            for number, url in enumerate(self.env_urls, start=1)
        ]

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"version": 1, "next_id": 1, "channels": []}
        except (OSError, ValueError) as error:  # not set aside: it holds what the user typed in
            raise StorageError(f"The channels file {self.path.name} cannot be read: {error}.") from None

    def _changing(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return changing_json(self.path, self.lock_path, self._read, "The channels")

    def all(self) -> list[dict[str, Any]]:
        """Every Apprise channel, URL included: for sending, never for showing."""
        return [*self.env_channels(), *self._read()["channels"]]

    def create(self, name: Any, url: Any, now: datetime) -> dict[str, Any]:
        name, url = _checked_name(name), _checked_url(url)
        with self._changing() as data:
            if len(data["channels"]) >= MAX_CHANNELS:
                raise Conflict(
                    f"There are {MAX_CHANNELS} channels already; delete one first.", code="too_many_channels"
                )
            channel = {
                "id": str(data["next_id"]),
                "name": name,
                "url": url,
                "source": "user",
                "created_at": now.isoformat(timespec="seconds"),
            }
            data["next_id"] += 1
            data["channels"].append(channel)
        return channel

    def update(self, channel_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        self._writable(channel_id)
        checked = {}
        if changes.get("name") is not None:
            checked["name"] = _checked_name(changes["name"])
        if changes.get("url") is not None:
            checked["url"] = _checked_url(changes["url"])
        with self._changing() as data:
            channel = _find(data, channel_id)
            channel.update(checked)
        return channel

    def delete(self, channel_id: str) -> None:
        self._writable(channel_id)
        with self._changing() as data:
            data["channels"].remove(_find(data, channel_id))

    def _writable(self, channel_id: str) -> None:
        if channel_id.startswith("env-") and any(c["id"] == channel_id for c in self.env_channels()):
            raise Conflict(
                "Channels from NOTIFY_URLS are changed in .env, not through the API.", code="channel_read_only"
            )


def public(channel: dict[str, Any]) -> dict[str, Any]:
    """A channel as responses show it: the URL masked, plus the service's name."""
    shown = {key: value for key, value in channel.items() if key != "url"}
    shown["url"] = masked(channel["url"])
    shown["kind"] = "apprise"
    shown["service"] = channel["url"].split("://", 1)[0]
    return shown


def _find(data: dict[str, Any], channel_id: str) -> dict[str, Any]:
    found = next((c for c in data["channels"] if c["id"] == channel_id), None)
    if found is None:
        raise _missing(channel_id)
    return found


def _missing(channel_id: str) -> NotFound:
    return NotFound(f"There is no channel {channel_id!r}.", code="channel_not_found")


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('"name" must say what the channel is, e.g. 手机 or 工作群.', code="invalid_channel_name")
    if len(name) > MAX_NAME_CHARS:
        raise BadRequest(f'"name" is longer than {MAX_NAME_CHARS} characters.', code="invalid_channel_name")
    return name.strip()


def _checked_url(url: Any) -> str:
    notifier(url)
    return url.strip()


class Channels:
    """Every channel (Apprise URLs and browser push subscriptions), the push outbox, and the leader's pusher."""

    def __init__(
        self,
        settings: Settings,
        poke: Callable[[], None],
        webpush: Any = None,
        on_removed: Callable[[str], None] = lambda channel_id: None,
    ):
        self.store = ChannelStore(settings.data_dir, settings.notify_url_list)
        self.webpush = webpush  # webpush.WebPush, when browser push is wired (it tells `on_removed` itself)
        self.on_removed = on_removed  # e.g. reminders naming the channel stop naming it
        self.outbox = PushOutbox(settings.data_dir, settings.push_retries, poke)
        self.pusher = Pusher(self.outbox, self.by_id, self.send, settings.push_timeout, warm=self._warm)

    def _warm(self) -> None:
        """Load Apprise's plugins in the leader now (~0.5 s) if any channel will need them."""
        if self.store.all():
            _apprise().Apprise.instantiate("json://localhost", suppress_exceptions=True)

    def by_id(self) -> dict[str, dict[str, Any]]:
        """Every channel by id, Apprise URLs included: for sending, never for showing."""
        channels = {channel["id"]: {**channel, "kind": "apprise"} for channel in self.store.all()}
        for subscription in self.webpush.subscriptions() if self.webpush else []:
            channels[subscription["id"]] = {**subscription, "kind": "webpush", "source": "browser"}
        return channels

    def listed(self) -> list[dict[str, Any]]:
        """Every channel as responses show it."""
        return [public(channel) if channel["kind"] == "apprise" else channel for channel in self.by_id().values()]

    def shown(self, channel_id: str) -> dict[str, Any]:
        found = next((channel for channel in self.listed() if channel["id"] == channel_id), None)
        if found is None:
            raise _missing(channel_id)
        return found

    def delete(self, channel_id: str) -> None:
        """Delete an added channel, or forget a browser's subscription (a lost phone)."""
        if channel_id.startswith("push-") and self.webpush is not None:
            if not self.webpush.remove(channel_id):
                raise _missing(channel_id)
            return
        self.store.delete(channel_id)
        self.on_removed(channel_id)

    def check_ids(self, ids: list[str] | None) -> None:
        """400 `unknown_channel` when a reminder names a channel that does not exist."""
        if not ids:  # null (every channel) or none: nothing to look up
            return
        unknown = sorted(set(ids) - set(self.by_id()))
        if unknown:
            raise BadRequest(
                f'"channels" names {", ".join(unknown)}, which GET /api/channels does not list.', code="unknown_channel"
            )

    def send(
        self, channel: dict[str, Any], title: str, body: str, timeout: float, tag: str = "test"
    ) -> tuple[bool, str]:
        """One message to one channel: (delivered, what the service said). `tag` names the occurrence, so a
        browser shows a push sent again in place of the first."""
        if channel["kind"] == "webpush":
            if self.webpush is None:
                return False, "Browser push is not available on this server."
            return self.webpush.send(channel["id"], {"title": title, "body": body, "tag": tag, "url": "/"}, timeout)
        return send_apprise(channel["url"], title, body, timeout)

    def test(self, channel_id: str) -> tuple[bool, str]:
        """Send a test message to one channel now; what the service said."""
        channel = self.by_id().get(channel_id)
        if channel is None:
            raise _missing(channel_id)
        return self.send(channel, TEST_TITLE, TEST_BODY, self.pusher.timeout)

    def enqueue(self, occurrence: str, reminder: dict[str, Any], message: dict[str, Any]) -> None:
        """Queue the stored `message` of `occurrence` for each of the reminder's channels (all when it names none)."""
        chosen = reminder.get("channels")
        try:
            channels = [c for channel_id, c in self.by_id().items() if chosen is None or channel_id in chosen]
            self.outbox.enqueue(occurrence, reminder["id"], reminder["text"], message, channels)
        except StorageError as error:  # the message is in the conversation: a push problem must not undo that
            log.error("Reminder %s is not pushed: %s", occurrence, error.message)
            return
        self.pusher.wake()  # in the leader, at once; from another worker the outbox's poke wakes it
