"""A local stand-in for a browser push service (FCM, Mozilla autopush): a real HTTP server on 127.0.0.1.

Tests make subscribers as a browser would (a P-256 key pair and a 16-byte auth secret of their own), hand
their subscriptions to the app, and read what arrived. For each POST the stand-in checks the VAPID
`Authorization: vapid t=<JWT>, k=<key>` header (ES256 signature with the app's public key, `aud` this
origin, `exp` ahead, `sub` the contact), decrypts the aes128gcm body with the subscriber's private key and
auth secret, records the JSON payload, and answers 201, or the status a test scripted.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    """One browser: its keys, the endpoint the stand-in gave it, and the statuses scripted for its next pushes."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    answers: list[int] = field(default_factory=list)

    def subscription(self) -> dict[str, Any]:
        """What PushSubscription.toJSON() gives the page."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth_secret)},
        }


@dataclass
class Delivery:
    """A push the stand-in accepted and decrypted."""

    token: str
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]


class PushService:
    """The stand-in server. `vapid_key` (the app's public key, base64url) and `contact` are what it insists on."""

    def __init__(self, vapid_key: str | None = None, contact: str | None = None):
        self.vapid_key = vapid_key
        self.contact = contact
        self.subscribers: dict[str, Subscriber] = {}
        self.deliveries: list[Delivery] = []
        self.refusals: list[str] = []  # why a push was refused (a bad VAPID header, a body that did not decrypt)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.origin = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> PushService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def subscriber(self) -> Subscriber:
        """A new browser subscribed here: fresh keys, a secret-looking endpoint path."""
        token = secrets.token_urlsafe(24)
        subscriber = Subscriber(
            token, f"{self.origin}/push/{token}", ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
        )
        self.subscribers[token] = subscriber
        return subscriber

    def delivered_to(self, subscriber: Subscriber) -> list[dict[str, Any]]:
        with self._lock:
            return [d.payload for d in self.deliveries if d.token == subscriber.token]

    # ---- checking one push ----

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        """The JWT's claims once the header is `vapid t=…, k=…` and its ES256 signature verifies; else ValueError."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError(f"Authorization scheme {scheme!r}, not vapid")
        parts = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = parts.get("t", ""), parts.get("k", "")
        if self.vapid_key is not None and key != self.vapid_key:
            raise ValueError("k is not the app's public key")
        header, claims, signature = token.split(".")
        if json.loads(unb64url(header)).get("alg") != "ES256":
            raise ValueError("JWT not ES256")
        raw = unb64url(signature)
        if len(raw) != 64:
            raise ValueError("signature is not 64 bytes (r||s)")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("JWT signature does not verify") from None
        decoded = json.loads(unb64url(claims))
        if decoded.get("aud") != self.origin:
            raise ValueError(f"aud {decoded.get('aud')!r} is not {self.origin}")
        if not decoded.get("exp", 0) > time.time():
            raise ValueError("exp is not in the future")
        if self.contact is not None and decoded.get("sub") != self.contact:
            raise ValueError(f"sub {decoded.get('sub')!r} is not {self.contact!r}")
        return decoded

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        """The status for one POST, recording the push when it is accepted."""
        token = path.removeprefix("/push/")
        subscriber = self.subscribers.get(token)
        if subscriber is None:
            return 404, "no such subscription"
        try:
            claims = self._check_vapid(headers.get("authorization", ""))
            if headers.get("content-encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {headers.get('content-encoding')!r}")
            if not headers.get("ttl", "").isdigit():
                raise ValueError("no TTL header")
            plain = http_ece.decrypt(
                body, private_key=subscriber.private_key, auth_secret=subscriber.auth_secret, version="aes128gcm"
            )
            payload = json.loads(plain)
        except Exception as error:  # noqa: BLE001 - any failure is a refusal the test reads
            with self._lock:
                self.refusals.append(f"{type(error).__name__}: {error}")
            return 400, "refused"
        with self._lock:
            status = subscriber.answers.pop(0) if subscriber.answers else 201
            if status < 300:
                self.deliveries.append(Delivery(token, payload, headers, claims))
        return status, ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, text = service._receive(self.path, headers, body)
                encoded = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
