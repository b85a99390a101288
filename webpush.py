"""Browser push (Web Push with VAPID): the server's key pair, the browsers' subscriptions, and sending to one.

Under the data folder:

- `vapid_private.pem` — the application server's P-256 key, made once (0600). Browsers subscribe with its
  public half; a new key would silently orphan every subscription, so it is created under a lock and
  never replaced.
- `push_subscriptions.json` — the subscriptions (0600), replaced atomically under `push_subscriptions.json.lock`.
  An endpoint URL is a capability: whoever knows it (and the keys) can push to that browser, so only the
  push service's host ever leaves this module.

pywebpush pulls in aiohttp (tens of MB per process): it, py_vapid and cryptography are imported only
inside the functions that need them, so a worker that never pushes never loads them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from errors import BadRequest, Conflict, StorageError
from history_store import file_lock, write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

KEY_FILE = "vapid_private.pem"
SUBSCRIPTIONS_FILE = "push_subscriptions.json"
MAX_SUBSCRIPTIONS = 100
MAX_NAME_CHARS = 100
DEFAULT_NAME = "Browser"
TTL_SECONDS = 86400  # a phone that is off for the night still gets the morning's reminder
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
GONE = (404, 410)  # the push service's word that this subscription no longer exists


def _b64url_decode(text: str) -> bytes:
    """Bytes of base64url `text`, padded or not; ValueError when it is not base64url."""
    if not isinstance(text, str) or not text or any(c in text for c in "+/ \n"):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _refused(sentence: str) -> BadRequest:
    return BadRequest(sentence, code="invalid_subscription")


def _checked_endpoint(endpoint: Any) -> str:
    """`endpoint` if it is an https URL with a host (http only on loopback); else BadRequest."""
    if not isinstance(endpoint, str) or len(endpoint) > 2048:
        raise _refused('"subscription.endpoint" must be the push service URL the browser gave (a string).')
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _refused('"subscription.endpoint" is not a valid URL.') from None
    if not parts.hostname or parts.username or parts.password:
        raise _refused('"subscription.endpoint" must be an https:// URL with a host.')
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return endpoint
    raise _refused('"subscription.endpoint" must be an https:// URL (http:// only for localhost).')


def _checked_keys(keys: Any) -> dict[str, str]:
    """The subscription's `p256dh` (a P-256 public point) and `auth` (16 bytes), base64url; else BadRequest."""
    if not isinstance(keys, dict):
        raise _refused('"subscription.keys" must be an object with "p256dh" and "auth".')
    try:
        point = _b64url_decode(keys.get("p256dh"))
    except ValueError:
        point = b""
    if len(point) != 65 or point[0] != 4:
        raise _refused('"subscription.keys.p256dh" must be a base64url P-256 public key (65 bytes).')
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise _refused('"subscription.keys.p256dh" is not a point on the P-256 curve.') from None
    try:
        secret = _b64url_decode(keys.get("auth"))
    except ValueError:
        secret = b""
    if len(secret) != 16:
        raise _refused('"subscription.keys.auth" must be a base64url secret of 16 bytes.')
    return {"p256dh": keys["p256dh"], "auth": keys["auth"]}


def _service_host(endpoint: str) -> str:
    """The push service's host (what may be shown of an endpoint), with its port when not the default."""
    parts = urlsplit(endpoint)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: never its endpoint path or keys."""
    return {
        "id": record["id"],
        "name": record["name"],
        "service": _service_host(record["endpoint"]),
        "created_at": record["created_at"],
    }


class WebPush:
    """The VAPID key pair and the push subscriptions of one data folder, and sending a payload to one."""

    def __init__(self, data_dir: Path, contact: str, on_removed: Callable[[str], None] = lambda subscription_id: None):
        self.data_dir = Path(data_dir)
        self.contact = contact
        self.on_removed = on_removed  # e.g. reminders naming the channel stop naming it
        self.key_path = self.data_dir / KEY_FILE
        self.path = self.data_dir / SUBSCRIPTIONS_FILE
        self._lock_path = self.data_dir / f"{SUBSCRIPTIONS_FILE}.lock"
        self._pem: bytes | None = None

    # ---- keys ----

    def _private_pem(self) -> bytes:
        """The PEM of the key pair, created on first use; under a lock, so every process ends with the same one."""
        if self._pem is not None:
            return self._pem
        try:
            self._pem = self.key_path.read_bytes()
            return self._pem
        except FileNotFoundError:
            pass
        except OSError as error:
            raise StorageError(f"The push key {self.key_path} cannot be read: {error.strerror}.") from None
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with file_lock(self.data_dir / f"{KEY_FILE}.lock"):
                if not self.key_path.exists():  # another process may have made it while we waited
                    write_bytes_atomic(self.key_path, self._new_key_pem())  # mkstemp: 0600
                    log.info("Created the browser push (VAPID) key %s", self.key_path)
                self._pem = self.key_path.read_bytes()
        except OSError as error:
            raise StorageError(f"The push key {self.key_path} cannot be written: {error.strerror}.") from None
        return self._pem

    @staticmethod
    def _new_key_pem() -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> str:
        """The application server key: the uncompressed public point, base64url, as pushManager.subscribe takes it."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self._private_pem(), password=None)
        point = key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return _b64url_encode(point)

    # ---- subscriptions ----

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"next_id": 1, "subscriptions": []}
        except OSError as error:
            raise StorageError(f"The push subscriptions cannot be read: {error.strerror}.") from None
        except ValueError:
            raise StorageError(f"{self.path} is not a push subscriptions file.") from None
        if not isinstance(data, dict) or not isinstance(data.get("subscriptions"), list):
            raise StorageError(f"{self.path} is not a push subscriptions file.")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.path, data)  # mkstemp: 0600
        except OSError as error:
            raise StorageError(f"The push subscriptions cannot be saved: {error.strerror}.") from None

    def _locked(self) -> Any:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"The data folder cannot be created: {error.strerror}.") from None
        return file_lock(self._lock_path)

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription as the API shows it (id, name, service, created_at), oldest first."""
        return [_public(record) for record in self._read()["subscriptions"]]

    def subscribe(self, subscription: dict[str, Any], name: str | None, now: datetime) -> dict[str, Any]:
        """Store a browser's PushSubscription (its toJSON()); the same endpoint again keeps its id."""
        if not isinstance(subscription, dict):
            raise _refused('"subscription" must be the object PushSubscription.toJSON() gives.')
        endpoint = _checked_endpoint(subscription.get("endpoint"))
        keys = _checked_keys(subscription.get("keys"))
        name = " ".join(str(name or "").split())[:MAX_NAME_CHARS] or DEFAULT_NAME
        with self._locked():
            data = self._read()
            record = next((r for r in data["subscriptions"] if r["endpoint"] == endpoint), None)
            if record is None:
                if len(data["subscriptions"]) >= MAX_SUBSCRIPTIONS:
                    raise Conflict(
                        f"There are {MAX_SUBSCRIPTIONS} push subscriptions already; remove some first.",
                        code="too_many_subscriptions",
                    )
                record = {"id": f"push-{data['next_id']}", "created_at": now.isoformat(timespec="seconds")}
                data["next_id"] += 1
                data["subscriptions"].append(record)
            record.update(name=name, endpoint=endpoint, keys=keys)
            self._write(data)
        return _public(record)

    def unsubscribe(self, endpoint: str) -> bool:
        """Forget the subscription with this endpoint; whether there was one."""
        return self._forget(lambda record: record["endpoint"] == endpoint)

    def remove(self, subscription_id: str) -> bool:
        """Forget subscription `subscription_id` (a lost phone, from the channels panel); whether there was one."""
        return self._forget(lambda record: record["id"] == subscription_id)

    def _forget(self, chosen: Callable[[dict[str, Any]], bool]) -> bool:
        with self._locked():
            data = self._read()
            gone = [r["id"] for r in data["subscriptions"] if chosen(r)]
            data["subscriptions"] = [r for r in data["subscriptions"] if not chosen(r)]
            if gone:
                self._write(data)
        for subscription_id in gone:
            self.on_removed(subscription_id)
        return bool(gone)

    # ---- sending ----

    def send(self, subscription_id: str, payload: dict[str, Any], timeout: float) -> tuple[bool, str]:
        """Encrypt `payload` (JSON) for one subscription and POST it to its push service.

        Answers (delivered, what the service said in one short sentence); never raises for the network or
        the service. A 404/410 means the browser dropped the subscription: it is removed here too.
        """
        try:
            record = next((r for r in self._read()["subscriptions"] if r["id"] == subscription_id), None)
        except StorageError as error:
            return False, error.message
        if record is None:
            return False, f"There is no push subscription {subscription_id} (it was removed)."
        host = _service_host(record["endpoint"])
        try:
            status = self._post(record, json.dumps(payload, ensure_ascii=False), timeout)
        except Exception as error:  # whatever the network, TLS or encryption did: one sentence, no URL
            return False, _failure_sentence(error, host, timeout)
        answer = f"HTTP {status} {_reason(status)}".rstrip()
        if status in GONE:
            try:
                self.remove(subscription_id)
            except StorageError as error:
                return False, f"{answer}: subscription expired; removing it failed: {error.message}"
            log.info("Push subscription %s (%s) answered %s: removed", subscription_id, host, status)
            return False, f"{answer}: subscription expired, removed"
        return status < 300, answer

    def _post(self, record: dict[str, Any], data: str, timeout: float) -> int:
        """Send one encrypted message with pywebpush; the push service's HTTP status."""
        from py_vapid import Vapid
        from pywebpush import WebPushException, webpush

        info = {"endpoint": record["endpoint"], "keys": record["keys"]}
        try:
            response = webpush(
                info,
                data,
                vapid_private_key=Vapid.from_pem(self._private_pem()),
                vapid_claims={"sub": self.contact},  # fresh each call: pywebpush writes aud and exp into it
                content_encoding="aes128gcm",
                timeout=timeout,
                ttl=TTL_SECONDS,
                headers={"Urgency": "high"},  # a reminder is worth waking the phone for
            )
        except WebPushException as error:
            if error.response is None:
                raise
            return error.response.status_code
        return response.status_code  # type: ignore[union-attr]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _failure_sentence(error: BaseException, host: str, timeout: float) -> str:
    """Why nothing reached the push service, naming only its host (requests' own words quote the whole URL)."""
    import requests

    if isinstance(error, requests.Timeout):
        return f"{host} did not answer within {timeout:g} s"
    if isinstance(error, requests.ConnectionError):
        return f"cannot connect to {host}: {_os_reason(error)}"
    if type(error).__name__ == "VapidException":  # its words name the claim at fault, never the URL
        return f"the VAPID signature was refused: {error}"
    log.warning("Push to %s failed: %s", host, type(error).__name__)
    return f"push to {host} failed ({type(error).__name__})"


def _os_reason(error: BaseException) -> str:
    """The operating system's words for the innermost socket error (e.g. "connection refused")."""
    seen: set[int] = set()
    current: BaseException | None = error
    reason = "no connection"
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            reason = os.strerror(current.errno).lower()
        elif "Name or service not known" in str(current) or "getaddrinfo" in str(current):
            reason = "unknown host"
        current = current.__cause__ or current.__context__ or _wrapped(current)
    return reason


def _wrapped(error: BaseException) -> BaseException | None:
    """urllib3 keeps the cause of a retry failure in `.reason` (and requests its own in args)."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    inner = next((arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException)), None)
    return inner
