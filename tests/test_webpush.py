"""Browser push: the VAPID key made once, subscriptions through the API, pushes a push service can decrypt, the bell."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from config import ConfigError, load_settings
from history_store import file_lock
from tests.support.browser import PHONE, screenshot
from tests.support.client import app_env
from tests.support.push_service import PushService, Subscriber, b64url
from tests.support.servers import ROOT, Gunicorn, free_port, one_connection_per_worker
from tests.support.waiting import wait_until
from webpush import MAX_SUBSCRIPTIONS, WebPush

CONTACT = "mailto:ops@example.com"
REMINDER = {"title": "定时提醒", "body": "喝水", "tag": "reminder-3@2026-11-26T09:00:00+08:00", "url": "/"}


@pytest.fixture
def api(serve):
    """The app with the contact the push service stand-in insists on."""
    return serve(PUSH_CONTACT=CONTACT)


@pytest.fixture
def push_service():
    service = PushService(contact=CONTACT).start()
    yield service
    service.stop()


def subscribe(api, subscriber: Subscriber, name: str | None = "Chrome · Android"):
    return api.post("/api/push/subscriptions", json={"subscription": subscriber.subscription(), "name": name})


def webpush_of(api) -> WebPush:
    """A WebPush on the served app's data folder, as the lead's dispatcher holds one."""
    return WebPush(api.settings.data_dir, api.settings.push_contact)


def secrets_of(subscriber: Subscriber) -> list[str]:
    """What must never be shown: the endpoint's path and the subscription's keys."""
    keys = subscriber.subscription()["keys"]
    return [subscriber.token, keys["p256dh"], keys["auth"]]


# ---- the key pair ------------------------------------------------------------------------------


def test_the_key_pair_is_made_once_and_survives_a_restart(serve):
    first = serve().get("/api/push/key")
    assert first.status_code == 200
    key = first.json()["public_key"]
    point = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    assert len(point) == 65 and point[0] == 4  # the uncompressed P-256 point applicationServerKey takes
    again = serve()  # a second app on the same data folder: a restart
    assert again.get("/api/push/key").json() == {"success": True, "public_key": key}
    pem = again.settings.data_dir / "vapid_private.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def lock_waiters(path: Path) -> int:
    """How many processes wait for the flock on `path` (their lines in /proc/locks start with `->`)."""
    inode = f":{path.stat().st_ino}"
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line.split() and line.split()[-3].endswith(inode))


def test_two_gunicorn_workers_asking_at_once_agree_on_one_key(upstream, tmp_path):
    data_dir = tmp_path / "data"
    args = ["-w", "2", "-k", "gthread", "--threads", "4", "--keep-alive", "60", "--graceful-timeout", "5"]
    server = Gunicorn(app_env(upstream, data_dir), args, tmp_path / "gunicorn.log")
    server.args = [*args, "-b", f"127.0.0.1:{server.port}"]
    keys: list[str] = []

    def ask(connection) -> None:
        connection.request("GET", "/api/push/key")
        keys.append(json.loads(connection.getresponse().read())["public_key"])

    with server, one_connection_per_worker(server) as connections:
        lock = data_dir / "vapid_private.pem.lock"
        # Held here, so both workers find no key and then wait for the lock together: the worst case, every time.
        with file_lock(lock):
            threads = [threading.Thread(target=ask, args=(c,)) for c in connections]
            for thread in threads:
                thread.start()
            wait_until(lambda: lock_waiters(lock) == 2, 30, message="both workers waiting for the key lock")
        for thread in threads:
            thread.join(30)
    assert len(keys) == 2 and keys[0] == keys[1]
    assert WebPush(data_dir, CONTACT).public_key == keys[0]


def test_a_bad_push_contact_stops_start_up_with_one_line():
    with pytest.raises(ConfigError, match="PUSH_CONTACT='admin' is invalid: expected a mailto: address"):
        load_settings({"PUSH_CONTACT": "admin"})
    assert load_settings({"PUSH_CONTACT": "https://example.com/contact"}).push_contact == "https://example.com/contact"


def test_importing_webpush_and_the_app_does_not_load_pywebpush_or_aiohttp():
    code = "import app, webpush, sys; print(sorted({'aiohttp', 'pywebpush', 'py_vapid'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- subscriptions -----------------------------------------------------------------------------


def test_a_subscription_is_stored_listed_and_removed_through_the_api(api, push_service):
    phone, laptop = push_service.subscriber(), push_service.subscriber()
    created = subscribe(api, phone)
    assert created.status_code == 201, created.text
    host = push_service.origin.removeprefix("http://")
    channel = created.json()["channel"]
    assert {k: v for k, v in channel.items() if k != "created_at"} == {
        "id": "push-1",
        "name": "Chrome · Android",
        "service": host,
    }
    assert datetime.fromisoformat(channel["created_at"]).tzinfo is not None
    again = subscribe(api, phone, name="Chrome · Pixel")  # the browser re-subscribing: same channel
    assert again.json()["channel"]["id"] == "push-1"
    assert subscribe(api, laptop, name=None).json()["channel"]["name"] == "Browser"
    store = webpush_of(api)
    assert [(s["id"], s["name"], s["service"]) for s in store.subscriptions()] == [
        ("push-1", "Chrome · Pixel", host),
        ("push-2", "Browser", host),
    ]
    assert stat.S_IMODE((api.settings.data_dir / "push_subscriptions.json").stat().st_mode) == 0o600
    removed = api.delete("/api/push/subscriptions", json={"endpoint": phone.endpoint})
    assert removed.json() == {"success": True, "removed": True}
    assert api.delete("/api/push/subscriptions", json={"endpoint": phone.endpoint}).json()["removed"] is False
    assert [s["id"] for s in store.subscriptions()] == ["push-2"]
    for response in (created, again, removed):
        assert not any(secret in response.text for secret in secrets_of(phone))


def good_subscription() -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
        "keys": {"p256dh": b64url(point), "auth": b64url(os.urandom(16))},
    }


def changed(path: str, value: object) -> dict:
    """A good subscription with one part replaced (`keys.auth`) or dropped (value None)."""
    subscription = good_subscription()
    *parents, last = path.split(".")
    target = subscription
    for part in parents:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return subscription


OFF_CURVE = b64url(b"\x04" + b"\x01" * 64)
BAD_SUBSCRIPTIONS = {
    "http to another host": (changed("endpoint", "http://push.example.com/x"), "https://"),
    "not a URL scheme": (changed("endpoint", "ftp://push.example.com/x"), "https://"),
    "endpoint a number": (changed("endpoint", 42), "push service URL"),
    "no keys": (changed("keys", None), '"subscription.keys" must be an object'),
    "p256dh too short": (changed("keys.p256dh", b64url(b"\x04" * 33)), "65 bytes"),
    "p256dh not base64url": (changed("keys.p256dh", "not base64!"), "65 bytes"),
    "p256dh off the curve": (changed("keys.p256dh", OFF_CURVE), "not a point on the P-256 curve"),
    "auth 15 bytes": (changed("keys.auth", b64url(b"a" * 15)), "16 bytes"),
    "auth missing": (changed("keys.auth", None), "16 bytes"),
    "not an object": ("https://fcm.googleapis.com/x", "valid dictionary"),
}


@pytest.mark.parametrize(("subscription", "words"), BAD_SUBSCRIPTIONS.values(), ids=BAD_SUBSCRIPTIONS.keys())
def test_a_bad_subscription_is_refused_with_one_sentence(api, subscription, words):
    response = api.post("/api/push/subscriptions", json={"subscription": subscription})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_subscription" and words in body["error"], body
    assert webpush_of(api).subscriptions() == []


def test_a_good_subscription_from_a_real_push_service_is_accepted_and_shows_only_its_host(api):
    response = api.post("/api/push/subscriptions", json={"subscription": good_subscription()})
    assert response.status_code == 201
    assert response.json()["channel"]["service"] == "fcm.googleapis.com"
    assert "/fcm/send/abc" not in response.text
    assert api.post("/api/push/subscriptions", json={}).json()["code"] == "missing_subscription"


def test_the_number_of_subscriptions_is_capped(api):
    store = webpush_of(api)
    now = datetime.now(UTC)
    for number in range(MAX_SUBSCRIPTIONS):
        store.subscribe(changed("endpoint", f"https://push.example.com/{number}"), None, now)
    response = api.post("/api/push/subscriptions", json={"subscription": good_subscription()})
    assert response.status_code == 409
    assert response.json()["code"] == "too_many_subscriptions"


# ---- sending -----------------------------------------------------------------------------------


def test_a_push_arrives_encrypted_with_a_vapid_header_that_verifies(serve, push_service, caplog):
    api = serve(PUSH_CONTACT=CONTACT, LOG_LEVEL="DEBUG")
    push_service.vapid_key = api.get("/api/push/key").json()["public_key"]
    phone = push_service.subscriber()
    channel = subscribe(api, phone).json()["channel"]
    delivered, answer = webpush_of(api).send(channel["id"], REMINDER, timeout=10)
    assert push_service.refusals == []
    assert (delivered, answer) == (True, "HTTP 201 Created")
    assert push_service.delivered_to(phone) == [REMINDER]
    arrived = push_service.deliveries[0]
    assert arrived.claims["sub"] == CONTACT and arrived.claims["aud"] == push_service.origin
    assert int(arrived.headers["ttl"]) >= 3600  # a phone asleep for an hour still gets it
    log = caplog.text
    pem = (api.settings.data_dir / "vapid_private.pem").read_text().splitlines()[1]
    assert not any(secret in log for secret in [*secrets_of(phone), pem])


def test_a_push_the_service_refuses_with_a_bad_key_is_not_delivered(serve, push_service):
    api = serve(PUSH_CONTACT=CONTACT)
    push_service.vapid_key = b64url(b"\x04" + b"\x00" * 64)  # a service expecting another app's key
    phone = push_service.subscriber()
    channel = subscribe(api, phone).json()["channel"]
    assert webpush_of(api).send(channel["id"], REMINDER, timeout=10) == (False, "HTTP 400 Bad Request")
    assert push_service.refusals == ["ValueError: k is not the app's public key"]


@pytest.mark.parametrize(("status", "answer"), [(410, "HTTP 410 Gone"), (404, "HTTP 404 Not Found")])
def test_a_subscription_the_push_service_says_is_gone_is_removed(api, push_service, status, answer):
    phone, laptop = push_service.subscriber(), push_service.subscriber()
    gone = subscribe(api, phone).json()["channel"]["id"]
    kept = subscribe(api, laptop).json()["channel"]["id"]
    phone.answers.append(status)
    store = webpush_of(api)
    assert store.send(gone, REMINDER, timeout=10) == (False, f"{answer}: subscription expired, removed")
    assert [s["id"] for s in store.subscriptions()] == [kept]
    assert store.send(gone, REMINDER, timeout=10)[0] is False  # no longer there: answered, not raised
    assert store.send(kept, REMINDER, timeout=10) == (True, "HTTP 201 Created")


def test_a_failing_push_service_keeps_the_subscription_and_says_what_happened(api, push_service):
    phone = push_service.subscriber()
    channel = subscribe(api, phone).json()["channel"]["id"]
    phone.answers.append(500)
    store = webpush_of(api)
    assert store.send(channel, REMINDER, timeout=10) == (False, "HTTP 500 Internal Server Error")
    assert [s["id"] for s in store.subscriptions()] == [channel]


def test_an_unreachable_push_service_is_an_answer_not_an_exception(api, push_service):
    phone = push_service.subscriber()
    port = free_port()  # nothing listens there
    phone.endpoint = f"http://127.0.0.1:{port}/push/{phone.token}"
    channel = subscribe(api, phone).json()["channel"]["id"]
    delivered, answer = webpush_of(api).send(channel, REMINDER, timeout=5)
    assert (delivered, answer) == (False, f"cannot connect to 127.0.0.1:{port}: connection refused")


def test_no_endpoint_path_or_key_reaches_a_response_or_a_log(upstream, push_service, tmp_path, caplog):
    # The sending below runs in this process, as the delivery thread would in a worker: log as the app sets it up
    # at LOG_LEVEL=DEBUG (urllib3 kept at INFO, as app._configure_logging does: its DEBUG lines quote every URL).
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="urllib3")
    data_dir = tmp_path / "data"
    env = app_env(upstream, data_dir, PUSH_CONTACT=CONTACT, LOG_LEVEL="DEBUG")
    server = Gunicorn(env, ["-w", "2", "-k", "gthread", "--threads", "4"], tmp_path / "gunicorn.log")
    server.args += ["-b", f"127.0.0.1:{server.port}"]
    phone = push_service.subscriber()
    with server:
        texts = [requests.get(server.base_url + "/api/push/key", timeout=10).text]
        push_service.vapid_key = json.loads(texts[0])["public_key"]
        url = server.base_url + "/api/push/subscriptions"
        texts.append(requests.post(url, json={"subscription": phone.subscription()}, timeout=10).text)
        bad = changed("keys.auth", "x")
        bad["endpoint"] = phone.endpoint
        texts.append(requests.post(url, json={"subscription": bad}, timeout=10).text)
        texts.append(requests.get(server.base_url + "/api/openapi.json", timeout=10).text)
        phone.answers.append(410)
        texts.append(str(WebPush(data_dir, CONTACT).send("push-1", REMINDER, timeout=10)))
        texts.append(requests.delete(url, json={"endpoint": phone.endpoint}, timeout=10).text)
    assert "subscription expired, removed" in texts[-2]
    for text in [*texts, server.log_text(), caplog.text]:
        assert not any(secret in text for secret in secrets_of(phone)), text


# ---- the page ----------------------------------------------------------------------------------

ZH_OFF = "开启浏览器推送：关掉页面也能收到提醒"
EN_OFF = "Turn on browser push: reminders arrive with the tab closed"


@pytest.mark.browser
def test_the_bell_sits_left_of_the_reminders_button_labelled_in_the_page_language(api, open_page):
    page = open_page(api.base_url)
    bell = page.locator("#push-toggle")
    expect(bell).to_be_visible()
    expect(bell).to_have_attribute("aria-label", ZH_OFF)
    expect(bell).to_have_attribute("title", ZH_OFF)
    expect(bell).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("document.getElementById('push-toggle').nextElementSibling.id") == "reminders-open"
    screenshot(page, "push-bell-desktop")
    english = open_page(api.base_url, locale="en-US", viewport=PHONE)
    expect(english.locator("#push-toggle")).to_have_attribute("aria-label", EN_OFF)
    box = english.locator("#push-toggle").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    screenshot(english, "push-bell-phone")
    dark = open_page(api.base_url, viewport=PHONE, color_scheme="dark")
    expect(dark.locator("#push-toggle")).to_be_visible()
    screenshot(dark, "push-bell-dark")


@pytest.mark.browser
def test_without_push_support_the_bell_is_disabled_and_says_why(api, open_page):
    page = open_page(api.base_url)
    page.add_init_script("delete window.PushManager")
    page.reload()
    bell = page.locator("#push-toggle")
    expect(bell).to_be_disabled()
    expect(bell).to_have_attribute("aria-label", "此浏览器不支持推送通知。")


@pytest.mark.browser
def test_clicking_the_bell_subscribes_or_says_the_push_service_is_out_of_reach(api, open_page):
    page = open_page(api.base_url)
    page.context.grant_permissions(["notifications"], origin=api.base_url)
    bell = page.locator("#push-toggle")
    bell.click()
    expect(bell).not_to_have_attribute("data-push", "busy", timeout=60_000)
    state = bell.get_attribute("data-push")
    stored = webpush_of(api).subscriptions()
    if state == "on":  # a Chromium that reaches its push service (FCM)
        expect(bell).to_have_attribute("aria-pressed", "true")
        assert len(stored) == 1 and stored[0]["service"] == "fcm.googleapis.com"
    else:  # no internet here: Chromium cannot reach FCM, and the bell says so
        assert state == "error"
        expect(bell).to_have_attribute("aria-label", "无法开启浏览器推送：浏览器连不上它的推送服务（点击重试）")
        expect(bell).to_have_attribute("aria-pressed", "false")
        assert stored == []
    screenshot(page, f"push-bell-after-click-{state}")


@pytest.mark.browser
def test_blocked_notifications_show_how_to_allow_them(api, open_page):
    page = open_page(api.base_url, locale="en-US")
    cdp = page.context.new_cdp_session(page)
    context_id = cdp.send("Target.getTargetInfo")["targetInfo"]["browserContextId"]
    blocked = {"name": "notifications"}
    cdp.send(
        "Browser.setPermission",
        {"origin": api.base_url, "permission": blocked, "setting": "denied", "browserContextId": context_id},
    )
    page.reload()
    bell = page.locator("#push-toggle")
    expect(bell).to_have_attribute("data-push", "denied")
    expect(bell).to_have_attribute("aria-label", re.compile("Notifications are blocked for this site"))


@pytest.mark.browser
def test_the_service_worker_shows_a_pushed_reminder_as_a_notification(api, open_page):
    page = open_page(api.base_url)
    page.context.grant_permissions(["notifications"], origin=api.base_url)
    served = requests.get(api.base_url + "/sw.js", timeout=10)
    assert served.headers["Content-Type"].startswith("text/javascript")
    assert served.headers["Cache-Control"] == "no-cache"
    cdp = page.context.new_cdp_session(page)
    registrations: dict[str, str] = {}
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.update({r["scopeURL"]: r["registrationId"] for r in event["registrations"]}),
    )
    cdp.send("ServiceWorker.enable")
    scope = page.evaluate(
        "navigator.serviceWorker.register('/sw.js').then(() => navigator.serviceWorker.ready).then(r => r.scope)"
    )
    assert scope == api.base_url + "/"
    page.wait_for_function("() => true")  # let the CDP events in
    wait_for = page.wait_for_timeout
    for _ in range(100):
        if scope in registrations:
            break
        wait_for(100)

    def deliver_twice() -> None:  # the same occurrence sent twice: one notification
        for tag in (REMINDER["tag"], REMINDER["tag"]):
            cdp.send(
                "ServiceWorker.deliverPushMessage",
                {
                    "origin": api.base_url,
                    "registrationId": registrations[scope],
                    "data": json.dumps({**REMINDER, "tag": tag}),
                },
            )

    notifications = """async () => {
      const registration = await navigator.serviceWorker.ready;
      const shown = await registration.getNotifications();
      return shown.map(n => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url}));
    }"""
    # Polled from here: page.evaluate awaits the promise; wait_for_function would count the promise as truthy.
    # On a loaded machine a worker just activated may drop a push delivered through DevTools: deliver again until
    # one shows (re-sending the same occurrence is what the tag must absorb anyway).
    for _ in range(5):
        deliver_twice()
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: page.evaluate(notifications), 6, message="the notification")
            break
    else:
        raise AssertionError("no notification after five deliveries")
    time.sleep(0.5)  # the second push of the same occurrence would show a second notification now
    shown = page.evaluate(notifications)
    assert shown == [{"title": "定时提醒", "body": "喝水", "tag": REMINDER["tag"], "url": "/"}]
