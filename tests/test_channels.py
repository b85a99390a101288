"""Push channels: Apprise URLs checked when saved, masked everywhere, and each reminder pushed once per channel.

The services are local stand-ins (tests/support/receivers.py): Apprise's real `json://` and `ntfy://` plugins
post to them over real HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import requests

import history_store
from channels import Channels, masked, scrub
from push_outbox import FINISHED_KEPT, PushOutbox
from scheduler import leader_pid
from tests.support.push_service import PushService
from tests.support.receivers import Receiver
from tests.support.waiting import wait_until
from tests.test_reminders import ZONE, create, gunicorn, listed, local, reminder_messages

SECRET = "Sec7retToken9"  # in every channel URL: it must never come back out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.close()


def add_channel(base_url: str, name: str, url: str) -> dict:
    response = requests.post(base_url + "/api/channels", json={"name": name, "url": url}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["channel"]


def runs_of(base_url: str, reminder_id: str) -> list[dict]:
    return requests.get(f"{base_url}/api/reminders/{reminder_id}/runs", timeout=10).json()["runs"]


# ---- the channels API --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("bogus://somewhere/x", "'bogus'"),
        ("tgram://", "tokens"),  # a known service, its token missing
        ("not a url", "Apprise URL"),
    ],
)
def test_a_url_apprise_cannot_use_is_refused_when_saved(api, url, says):
    response = api.post("/api/channels", json={"name": "手机", "url": url})
    assert response.status_code == 400 and response.json()["code"] == "invalid_channel_url"
    assert says in response.json()["error"]
    assert api.get("/api/channels").json()["channels"] == []


def test_channels_are_added_renamed_and_deleted_with_their_urls_masked(api, receiver):
    first = add_channel(api.base_url, "手机", f"bark://api.day.app/{SECRET}")
    assert (first["url"], first["service"], first["kind"], first["source"]) == (
        "bark://api.day.app/•••",
        "bark",
        "apprise",
        "user",
    )
    token_host = add_channel(api.base_url, "工作群", f"wecombot://{SECRET}")
    assert token_host["url"] == "wecombot://•••"  # the host is the token here
    renamed = api.session.patch(f"{api.base_url}/api/channels/{first['id']}", json={"name": "我的手机"})
    assert renamed.status_code == 200 and renamed.json()["channel"]["name"] == "我的手机"
    moved = api.session.patch(f"{api.base_url}/api/channels/{first['id']}", json={"url": "bogus://x"})
    assert moved.status_code == 400 and moved.json()["code"] == "invalid_channel_url"
    assert api.delete(f"/api/channels/{token_host['id']}").status_code == 200
    assert [c["name"] for c in api.get("/api/channels").json()["channels"]] == ["我的手机"]
    assert api.delete(f"/api/channels/{token_host['id']}").status_code == 404
    stored = api.settings.data_dir / "channels.json"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600, "the file holds tokens"


def test_notify_urls_are_listed_read_only(serve, receiver):
    api = serve(NOTIFY_URLS=f"{receiver.url('json', '/' + SECRET)} ntfys://ntfy.sh/{SECRET}")
    listed_channels = api.get("/api/channels").json()["channels"]
    assert [(c["id"], c["source"], c["url"]) for c in listed_channels] == [
        ("env-1", "env", f"json://127.0.0.1:{receiver.port}/•••"),
        ("env-2", "env", "ntfys://ntfy.sh/•••"),
    ]
    for response in (
        api.session.patch(f"{api.base_url}/api/channels/env-1", json={"name": "x"}),
        api.delete("/api/channels/env-1"),
    ):
        assert response.status_code == 409 and response.json()["code"] == "channel_read_only"


def test_a_test_message_answers_what_the_service_said_without_the_secret(api, receiver):
    channel = add_channel(api.base_url, "钩子", receiver.url("json", f"/hook/{SECRET}"))
    sent = api.post(f"/api/channels/{channel['id']}/test", json={}).json()
    assert sent["delivered"] is True and receiver.arrivals(f"/hook/{SECRET}")[0]["body"]["title"].startswith("⏰")
    receiver.script({"status": 500, "body": {"error": f"bad token {SECRET}"}})
    refused = api.post(f"/api/channels/{channel['id']}/test", json={}).json()
    assert refused["delivered"] is False and "500" in refused["answer"]
    assert SECRET not in json.dumps(refused)
    assert api.post("/api/channels/99/test", json={}).status_code == 404


def test_a_reminder_names_only_channels_that_exist(api, receiver):
    channel = add_channel(api.base_url, "钩子", receiver.url("json", "/hook"))
    unknown = api.post("/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "channels": ["7"]})
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_channel"
    made = api.post("/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "channels": [channel["id"]]})
    assert made.status_code == 201 and made.json()["reminder"]["channels"] == [channel["id"]]
    every = api.session.patch(f"{api.base_url}/api/reminders/1", json={"channels": None})
    assert every.json()["reminder"]["channels"] is None


# ---- pushing reminders -------------------------------------------------------------------------


def test_three_reminders_due_together_with_two_channels_make_six_deliveries(upstream, receiver, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2, LOG_LEVEL="DEBUG") as server:  # no secret even in DEBUG lines
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        add_channel(server.base_url, "钩子", receiver.url("json", f"/hook/{SECRET}"))
        add_channel(server.base_url, "ntfy", receiver.url("ntfy", f"/{SECRET}"))
        due = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=5)
        for text in ("吃药", "喝水", "开会"):
            create(server, text=text, at=local(due), mode="plain")
        wait_until(lambda: len(receiver.arrivals()) >= 6, 40, message="six deliveries")
        time.sleep(1.5)  # a seventh would arrive now
        runs = {r: runs_of(server.base_url, r)[0]["channels"] for r in ("1", "2", "3")}
        log = server.log_text()
    webhook = Counter(a["body"]["message"] for a in receiver.arrivals(f"/hook/{SECRET}"))
    ntfy = Counter((a["body"]["topic"], a["body"]["message"]) for a in receiver.arrivals("/"))
    assert webhook == Counter({"吃药": 1, "喝水": 1, "开会": 1})
    assert ntfy == Counter({(SECRET, "吃药"): 1, (SECRET, "喝水"): 1, (SECRET, "开会"): 1})
    assert [a["body"]["title"] for a in receiver.arrivals(f"/hook/{SECRET}")].count("⏰ 吃药") == 1
    assert all(o["status"] == "sent" and o["attempts"] == 1 for r in runs.values() for o in r.values())
    assert SECRET not in json.dumps(runs) and SECRET not in log


def test_a_refused_push_is_retried_and_recorded_once_delivered(upstream, receiver, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2, PUSH_RETRY_SECONDS="1,1,1") as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        add_channel(server.base_url, "钩子", receiver.url("json", f"/hook/{SECRET}"))
        receiver.script({"status": 503}, {"status": 500, "body": {"error": f"token {SECRET} overloaded"}})
        create(server, text="吃药", at=local(datetime.now(ZONE) + timedelta(seconds=4)), mode="plain")
        outcome = wait_until(
            lambda: (runs := runs_of(server.base_url, "1")) and runs[0]["channels"]["1"]["status"] == "sent" and runs,
            30,
            message="the push delivered",
        )[0]["channels"]["1"]
        time.sleep(2)  # a second delivery would arrive now
        log = server.log_text()
    assert len(receiver.requests) == 3 and len(receiver.arrivals()) == 1
    assert outcome["attempts"] == 3 and outcome["channel_name"] == "钩子"
    assert "retrying" in log and SECRET not in log


def test_a_push_the_leader_was_killed_before_sending_goes_out_once_after_the_restart(upstream, receiver, tmp_path):
    data_dir = tmp_path / "data"
    slow_retry = {"PUSH_RETRY_SECONDS": "4"}
    server = gunicorn(upstream, tmp_path, workers=2, **slow_retry).start()
    try:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        add_channel(server.base_url, "钩子", receiver.url("json", "/hook"))
        receiver.script({"status": 503})  # the first try is refused: the push waits in the outbox
        create(server, text="关火", at=local(datetime.now(ZONE) + timedelta(seconds=4)), mode="plain")
        wait_until(lambda: receiver.requests, 30, message="the first try")
        os.killpg(server.pid, signal.SIGKILL)  # every process, mid-wait
    finally:
        server.stop()
    assert reminder_messages(data_dir) and receiver.arrivals() == []
    for _ in range(2):  # the restart sends it; a second restart must not send it again
        with gunicorn(upstream, tmp_path, workers=2, **slow_retry):
            wait_until(lambda: receiver.arrivals(), 30, message="the push after the restart")
            time.sleep(1.5)
    assert len(receiver.arrivals()) == 1 and len(reminder_messages(data_dir, streaming_too=True)) == 1


def test_a_slow_channel_delays_neither_the_next_reminder_nor_a_chat(upstream, receiver, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2, PUSH_TIMEOUT="20") as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        add_channel(server.base_url, "慢", receiver.url("json", "/slow"))
        receiver.script({"delay": 15})
        first = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=4)
        create(server, text="一", at=local(first), mode="plain")
        create(server, text="二", at=local(first + timedelta(seconds=3)), mode="plain")
        wait_until(lambda: len(reminder_messages(data_dir)) == 2, 20, message="both reminders stored")
        second_stored = time.time()
        chat = requests.post(server.base_url + "/api/chat", json={"message": "你好"}, timeout=10)
        assert "一" not in [a["body"]["message"] for a in receiver.arrivals()], "the first push is still hanging"
        wait_until(lambda: len(receiver.arrivals()) == 2, 30, message="both pushes")
    # Loose on purpose: a push holding the delivery thread would put the second message 15 s late.
    assert second_stored - (first.timestamp() + 3) < 10 and chat.status_code == 200


def test_the_env_reminder_is_pushed_too(upstream, receiver, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2, NOTIFY_URLS=receiver.url("json", "/env")) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        assert requests.post(server.base_url + "/api/schedule/run", json={}, timeout=30).status_code == 200
        arrival = wait_until(lambda: receiver.arrivals("/env"), 20, message="the push")[0]
        # The receiver sees the push before the sender records it as sent: wait for the record.
        env = wait_until(
            lambda: (
                (env := listed(server)["env"])["last_run"].get("channels", {}).get("env-1", {}).get("status")
                not in (None, "pending")
                and env
            ),
            10,
        )
        runs = runs_of(server.base_url, "env")
    assert arrival["body"]["message"].startswith("收到：") and arrival["body"]["title"] == "⏰ 提醒 · Reminder"
    assert env["last_run"]["channels"]["env-1"]["status"] == "sent" == runs[0]["channels"]["env-1"]["status"]


def test_the_outbox_keeps_a_bounded_record_of_finished_pushes(tmp_path):
    outbox = PushOutbox(tmp_path, retry_seconds=())
    channel = {"id": "1", "name": "钩子"}
    outbox.enqueue("1@0", "1", "喝水", {"id": 0, "content": "喝水"}, [channel])
    sent = {**outbox.read()["pushes"]["1@0#1"], "status": "sent"}
    finished = {
        f"1@{n}#1": {**sent, "occurrence": f"1@{n}", "updated_at": f"2026-11-{1 + n // 100:02d}T00:00:{n % 60:02d}"}
        for n in range(FINISHED_KEPT + 5)
    }
    (tmp_path / "push_outbox.json").write_text(json.dumps({"version": 1, "pushes": finished}))
    outbox.enqueue("2@0", "2", "吃药", {"id": 0, "content": "吃药"}, [channel])
    outbox.enqueue("3@0", "3", "开会", {"id": 0, "content": "开会"}, [channel])
    outbox.record("3@0#1", True, "Sent.")  # a finished push: the oldest finished ones make room
    pushes = outbox.read()["pushes"]
    assert len(pushes) == FINISHED_KEPT + 1 and pushes["2@0#1"]["status"] == "pending"
    assert pushes["3@0#1"]["status"] == "sent" and "1@0#1" not in pushes


def test_a_reminder_reaches_a_subscribed_browser_once_through_its_push_service(upstream, receiver, tmp_path):
    data_dir = tmp_path / "data"
    contact = "mailto:reminders@example.com"
    push_service = PushService(contact=contact).start()
    try:
        with gunicorn(upstream, tmp_path, workers=2, PUSH_CONTACT=contact) as server:
            wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
            push_service.vapid_key = requests.get(server.base_url + "/api/push/key", timeout=10).json()["public_key"]
            phone = push_service.subscriber()
            body = {"subscription": phone.subscription(), "name": "Chrome · Android"}
            channel = requests.post(server.base_url + "/api/push/subscriptions", json=body, timeout=10).json()[
                "channel"
            ]
            assert [
                c["id"] for c in requests.get(server.base_url + "/api/channels", timeout=10).json()["channels"]
            ] == [channel["id"]]
            at = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=4)
            create(server, text="收衣服", at=local(at), mode="plain")
            wait_until(lambda: push_service.delivered_to(phone), 30, message="the push")
            time.sleep(1.5)  # a second would arrive now
            outcome = runs_of(server.base_url, "1")[0]["channels"][channel["id"]]
    finally:
        push_service.stop()
    assert push_service.refusals == []
    [payload] = push_service.delivered_to(phone)
    assert (payload["title"], payload["body"], payload["tag"]) == ("⏰ 收衣服", "收衣服", f"1@{at.isoformat()}")
    assert outcome["status"] == "sent" and outcome["answer"] == "HTTP 201 Created"


# ---- from review: masking, parallel sends, damaged files ----------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"dingtalk://{'a1' * 32}/", "dingtalk://•••"),  # a hex token looks like an IPv6 address to a regex
        (f"pushplus://{'0f' * 16}", "pushplus://•••"),
        ("wecombot://key.looks.like-a.host", "wecombot://•••"),  # its host is its key, whatever it looks like
        ("json://1234567890/hook", "json://•••"),  # digits only: a token, not an address
        ("json://[::1]:8080/hook", "json://::1:8080/•••"),
        ("ntfys://ntfy.sh/topic", "ntfys://ntfy.sh/•••"),
        ("mailto:hunter22x@host?a=://x", "•••"),  # not a scheme: nothing of it is shown
    ],
)
def test_masked_urls_show_scheme_and_host_only(url, shown):
    assert masked(url) == shown


def test_a_comma_inside_a_notify_url_stays_in_it(make_settings):
    settings = make_settings(NOTIFY_URLS="mailtos://me:pa,ss99word@smtp.qq.com?to=a@x.com,b@x.com, json://h/x")
    assert settings.notify_url_list == ("mailtos://me:pa,ss99word@smtp.qq.com?to=a@x.com,b@x.com", "json://h/x")


def test_a_service_answer_loses_the_secret_even_decoded():
    assert "secret" not in scrub("Sent to topic 'my-secret-topic'.", "ntfy://127.0.0.1/my%2Dsecret%2Dtopic")


def test_many_pushes_in_parallel_are_each_sent_once(make_settings, receiver):
    settings = make_settings(PUSH_RETRY_SECONDS="1")
    channels = Channels(settings, poke=lambda: None)
    for number in range(8):
        channels.store.create(f"c{number}", receiver.url("json", f"/c{number}"), datetime.now(ZONE))
    receiver.script(*[{"delay": number % 7 * 0.01} for number in range(400)])  # sends finish out of order
    channels.pusher.start()
    try:
        for number in range(40):
            reminder = {"id": str(number), "text": "喝水", "channels": None}
            channels.enqueue(f"{number}@t", reminder, {"id": number, "content": f"第{number}次"})
            time.sleep(0.01)
        wait_until(lambda: len(receiver.requests) >= 320, 60, message="320 pushes")
        time.sleep(1)  # a 321st would arrive now
    finally:
        channels.pusher.stop()
    sent = Counter((a["path"], a["body"]["message"]) for a in receiver.arrivals())
    assert len(sent) == 320 and set(sent.values()) == {1}, {k: n for k, n in sent.items() if n > 1}


def test_a_slow_channel_does_not_hold_up_the_others(make_settings):
    slow, fast = Receiver(), Receiver()
    slow.script(*[{"delay": 8}] * 16)
    channels = Channels(make_settings(PUSH_TIMEOUT="20"), poke=lambda: None)
    channels.store.create("慢", slow.url("json", "/slow"), datetime.now(ZONE))
    channels.store.create("快", fast.url("json", "/fast"), datetime.now(ZONE))
    channels.pusher.start()
    try:
        for number in range(16):
            reminder = {"id": str(number), "text": "喝水", "channels": None}
            channels.enqueue(f"{number}@t", reminder, {"id": number, "content": f"第{number}次"})
        wait_until(lambda: len(fast.arrivals()) == 16, 6, message="all 16 on the fast channel")
        assert slow.arrivals() == [], "the slow channel's first push is still hanging"
    finally:
        channels.pusher.stop()
        slow.close()
        fast.close()


def test_a_damaged_outbox_is_set_aside_and_reminders_are_still_listed(api):
    (api.settings.data_dir / "push_outbox.json").write_text("{not json")
    assert api.get("/api/reminders").status_code == 200
    assert [p.name.split(".corrupt-")[0] for p in api.settings.data_dir.glob("*.corrupt-*")] == ["push_outbox.json"]


def test_push_retry_seconds_0_means_one_try(make_settings):
    assert make_settings(PUSH_RETRY_SECONDS="0").push_retries == ()


def test_a_browser_subscription_is_removed_from_the_channels_panel(api):
    phone = PushService(contact=api.settings.push_contact).start()
    try:
        body = {"subscription": phone.subscriber().subscription(), "name": "丢了的手机"}
        channel = api.post("/api/push/subscriptions", json=body).json()["channel"]
    finally:
        phone.stop()
    assert api.delete(f"/api/channels/{channel['id']}").status_code == 200
    assert api.get("/api/channels").json()["channels"] == []
    assert api.delete(f"/api/channels/{channel['id']}").status_code == 404


def test_deleting_a_channel_takes_it_out_of_the_reminders_that_named_it(api, receiver):
    phone = add_channel(api.base_url, "手机", receiver.url("json", "/phone"))
    group = add_channel(api.base_url, "群", receiver.url("json", "/group"))
    both = api.post(
        "/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "channels": [phone["id"], group["id"]]}
    )
    only = api.post("/api/reminders", json={"text": "吃药", "cron": "0 8 * * *", "channels": [phone["id"]]})
    assert both.status_code == only.status_code == 201
    assert api.delete(f"/api/channels/{phone['id']}").status_code == 200
    shown = {r["text"]: r["channels"] for r in api.get("/api/reminders").json()["reminders"]}
    assert shown["喝水"] == [group["id"]] and shown["吃药"] == []  # named only it: pushed nowhere, not everywhere
    assert api.session.patch(f"{api.base_url}/api/reminders/2", json={"text": "吃药了吗"}).status_code == 200


def test_a_push_whose_outcome_cannot_be_written_is_not_sent_again(make_settings, receiver, monkeypatch):
    channels = Channels(make_settings(), poke=lambda: None)
    channels.store.create("钩子", receiver.url("json", "/hook"), datetime.now(ZONE))
    channels.enqueue("1@t", {"id": "1", "text": "喝水", "channels": None}, {"id": 1, "content": "喝水"})

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(history_store, "write_json_atomic", disk_full)  # the disk fills up once the push is queued
        channels.pusher.start()
        try:
            wait_until(lambda: receiver.requests, 10, message="the push")
            time.sleep(1.5)  # a push sent again would arrive now
            assert len(receiver.requests) == 1
        finally:
            patched.undo()  # the disk has room again: the outcome is written, still without sending again
        try:
            wait_until(lambda: channels.outbox.read()["pushes"]["1@t#1"]["status"] == "sent", 15, message="recorded")
        finally:
            channels.pusher.stop()
    assert len(receiver.requests) == 1


def test_a_browser_that_unsubscribes_is_taken_out_of_the_reminders_that_named_it(api):
    push_service = PushService(contact=api.settings.push_contact).start()
    try:
        phone = push_service.subscriber()
        body = {"subscription": phone.subscription(), "name": "手机"}
        channel = api.post("/api/push/subscriptions", json=body).json()["channel"]
    finally:
        push_service.stop()
    made = api.post("/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "channels": [channel["id"]]})
    assert made.status_code == 201
    gone = api.session.delete(api.base_url + "/api/push/subscriptions", json={"endpoint": phone.endpoint})
    assert gone.json()["removed"] is True
    [reminder] = [r for r in api.get("/api/reminders").json()["reminders"] if r["source"] == "user"]
    assert reminder["channels"] == []


def test_a_damaged_channels_file_costs_the_pushes_not_the_reminder(api):
    made = api.post("/api/reminders", json={"text": "喝水", "cron": "0 9 * * *", "mode": "plain"}).json()["reminder"]
    (api.settings.data_dir / "channels.json").write_text("{not json")
    sent = api.post(f"/api/reminders/{made['id']}/run", json={})
    assert sent.status_code == 200 and sent.json()["message"]["content"] == "喝水"
    assert len([m for m in api.history() if m.get("reminder_id")]) == 1
