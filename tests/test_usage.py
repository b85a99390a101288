"""Token usage: streams ask for it (and fall back when a provider will not say), replies keep it, and
GET /api/usage sums it per day (in TIMEZONE) and per conversation, equal to what the model API reported."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest
import requests

from config import load_settings
from conversations import Conversations
from tests.support.client import app_env
from tests.support.fake_upstream import API_KEY
from tests.support.servers import Gunicorn
from tests.test_reminders import ZONE, in_a_while
from usage import UsageReport

TOKENS = ("prompt_tokens", "completion_tokens", "total_tokens")


def events_of(response: requests.Response) -> list[dict]:
    """The JSON of each `data:` line of an SSE answer (other fields, such as `id:`, are skipped)."""
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def summed(usages: list[dict]) -> dict:
    return {key: sum(usage[key] for usage in usages) for key in TOKENS}


def counts(entry: dict) -> dict:
    return {key: entry[key] for key in TOKENS}


def usage_of(base_url: str, **params: object) -> dict:
    response = requests.get(base_url + "/api/usage", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


class Turns:
    """Chats with a running app and notes which of the fake's reported usages each conversation's turns caused."""

    def __init__(self, base_url: str, upstream):
        self.base_url = base_url
        self.upstream = upstream
        self.usages: dict[str, list[dict]] = {}

    def take(self, message: str, conversation_id: str, *, streamed: bool) -> dict:
        """One turn; returns the stored reply."""
        sent_before = len(self.upstream.usages_sent)
        body = {"message": message, "conversation_id": conversation_id}
        if streamed:
            reply = events_of(requests.post(self.base_url + "/api/chat/stream", json=body, timeout=30))[-1]["message"]
        else:
            response = requests.post(self.base_url + "/api/chat", json=body, timeout=30)
            assert response.status_code == 200, response.text
            reply = response.json()["message"]
        self.usages.setdefault(conversation_id, []).extend(self.upstream.usages_sent[sent_before:])
        return reply


# ---- the sums ---------------------------------------------------------------------------------


def test_usage_totals_equal_the_sum_of_the_fake_upstreams_usage(upstream, tmp_path):
    env = app_env(upstream, tmp_path / "data", DOTENV_PATH=str(tmp_path / "no.env"))
    args = ["-w", "2", "-k", "gthread", "--threads", "4", "--graceful-timeout", "5"]
    server = Gunicorn(env, args, tmp_path / "gunicorn.log")
    server.args += ["-b", f"127.0.0.1:{server.port}"]
    with server:
        created = requests.post(server.base_url + "/api/conversations", json={"title": "旅行计划"}, timeout=30)
        trip = created.json()["conversation"]["id"]  # titled: no background title call spends tokens meanwhile
        turns = Turns(server.base_url, upstream)
        plain = turns.take("你好", "main", streamed=False)
        streamed = turns.take("讲个笑话", "main", streamed=True)
        upstream.script(
            {"tool_calls": [{"name": "create_reminder", "arguments": {"text": "订机票", "at": in_a_while(days=1)}}]},
            {"content": "好的，明天提醒你订机票。"},
        )
        with_tools = turns.take("明天这个时候提醒我订机票", trip, streamed=True)
        upstream.script(
            {"tool_calls": [{"name": "list_reminders", "arguments": {}}]},
            {"reasoning": "看看列表", "content": "有一个。"},
        )
        listed = turns.take("我有哪些提醒？", trip, streamed=False)
        report = usage_of(server.base_url)

    assert all("stream_options" in r for r in upstream.requests if r["stream"])
    assert not any("stream_options" in r for r in upstream.requests if not r["stream"])
    assert len(upstream.usages_sent) == 6  # one a request: two turns of one request, two of two (a tool round)
    # Each reply keeps its requests' usage, summed over the turn's tool rounds.
    assert counts(plain["usage"]) == summed(turns.usages["main"][:1])
    assert counts(streamed["usage"]) == summed(turns.usages["main"][1:])
    assert counts(with_tools["usage"]) == summed(turns.usages[trip][:2])
    assert counts(listed["usage"]) == summed(turns.usages[trip][2:])
    assert with_tools["reminder_actions"][0]["action"] == "created"

    today = datetime.now(ZONE).date()
    assert (report["days"], report["since"]) == (30, (today - timedelta(days=29)).isoformat())
    assert counts(report["total"]) == summed(upstream.usages_sent) and report["total"]["messages"] == 4
    [day] = report["by_day"]
    assert day == {"date": today.isoformat(), **report["total"]}
    by_conversation = {entry["conversation_id"]: entry for entry in report["by_conversation"]}
    assert counts(by_conversation["main"]) == summed(turns.usages["main"])
    assert counts(by_conversation[trip]) == summed(turns.usages[trip])
    assert (by_conversation["main"]["messages"], by_conversation[trip]["messages"]) == (2, 2)
    assert by_conversation[trip]["title"] == "旅行计划"
    totals = [entry["total_tokens"] for entry in report["by_conversation"]]
    assert totals == sorted(totals, reverse=True)


def test_a_reminder_worded_by_the_model_counts_like_a_reply(api, upstream):
    reminder = api.post("/api/reminders", json={"text": "喝水", "cron": "0 8 * * *"}).json()["reminder"]
    sent = api.post(f"/api/reminders/{reminder['id']}/run", json={})
    assert sent.status_code == 200, sent.text
    message = sent.json()["message"]
    [usage] = upstream.usages_sent
    assert message["generated"] is True and counts(message["usage"]) == counts(usage)
    report = api.get("/api/usage").json()
    assert counts(report["total"]) == counts(usage) and report["total"]["messages"] == 1


# ---- streams and stream_options -------------------------------------------------------------------


def stream(api, message: str) -> list[dict]:
    return events_of(api.post("/api/chat/stream", json={"message": message}))


def test_a_provider_that_ignores_stream_options_gives_a_reply_without_usage(api, upstream):
    upstream.stream_options = "ignore"
    events = stream(api, "你好")
    assert events[-1]["type"] == "done"
    assert "usage" not in events[-1]["message"] and upstream.usages_sent == []
    assert upstream.requests[0]["stream_options"] == {"include_usage": True}
    assert api.get("/api/usage").json()["total"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "messages": 0,
    }


@pytest.mark.parametrize("refusal", ["refuse", "refuse_unknown"])
def test_a_provider_that_refuses_stream_options_is_asked_again_without_it_and_never_again(
    api, upstream, caplog, refusal
):
    upstream.stream_options = refusal
    with caplog.at_level(logging.INFO):
        first, second = stream(api, "你好"), stream(api, "再来一次")
    assert first[-1]["type"] == second[-1]["type"] == "done"
    assert first[-1]["message"]["content"] == "收到：你好"
    assert ["stream_options" in r for r in upstream.requests] == [True, False, False]
    assert "usage" not in second[-1]["message"]
    warnings = [r.getMessage() for r in caplog.records if "stream_options" in r.getMessage()]
    assert len(warnings) == 1 and "no longer ask" in warnings[0]
    assert API_KEY not in caplog.text
    assert [m["role"] for m in api.history()] == ["user", "assistant", "user", "assistant"]  # each stored once


def test_refused_stream_options_and_refused_tools_both_fall_back_in_that_order(api, upstream):
    upstream.stream_options = "refuse"
    upstream.script({"kind": "status", "status": 400, "body": {"error": {"message": "tools are not supported"}}})
    events = stream(api, "明天早上8点提醒我吃药")
    assert events[-1]["type"] == "done", events
    asked = [("stream_options" in r, "tools" in r) for r in upstream.requests]
    assert asked == [(True, True), (False, True), (False, False)]
    assert events[-1]["message"]["reminder_actions"][0]["action"] == "created"  # the phrase grammar set it


def test_a_generic_400_is_asked_again_without_stream_options_and_then_reported(serve, upstream):
    api = serve(REMINDER_TOOLS="false")  # no tools to drop: the client's own retry is the only one
    upstream.script(
        {"kind": "status", "status": 400, "body": {"error": {"message": "context too long"}}},
        {"kind": "status", "status": 400, "body": {"error": {"message": "context too long"}}},
    )
    response = api.post("/api/chat/stream", json={"message": "你好"})
    assert response.status_code == 502 and "context too long" in response.json()["error"]
    assert ["stream_options" in r for r in upstream.requests] == [True, False]
    stream(api, "你好")
    assert "stream_options" in upstream.requests[-1]  # refused for another reason: usage is still asked for


def frame(choices: list, **extra: object) -> str:
    return json.dumps({"id": "x", "object": "chat.completion.chunk", "choices": choices, **extra})


USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
DELTA = frame([{"index": 0, "delta": {"content": "好的"}, "finish_reason": None}])
FINISH = frame([{"index": 0, "delta": {}, "finish_reason": "stop"}])
PLACES = {
    "an event of its own after the finish": [DELTA, FINISH, frame([], usage=USAGE)],
    "the finish event (DeepSeek, SiliconFlow)": [
        DELTA,
        frame([{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=USAGE),
    ],
    "the finish event's choice (Moonshot)": [
        DELTA,
        frame([{"index": 0, "delta": {}, "finish_reason": "stop", "usage": USAGE}]),
    ],
    "every event, the last one whole": [
        frame(
            [{"index": 0, "delta": {"content": "好的"}, "finish_reason": None}], usage={**USAGE, "completion_tokens": 1}
        ),
        frame([{"index": 0, "delta": {}, "finish_reason": "stop"}], usage=USAGE),
    ],
}


@pytest.mark.parametrize("frames", PLACES.values(), ids=PLACES.keys())
def test_usage_is_kept_wherever_the_stream_sends_it(api, upstream, frames):
    upstream.script({"frames": [*frames, "[DONE]"], "ending": "none"})
    events = stream(api, "你好")
    assert events[-1]["type"] == "done", events
    assert events[-1]["message"]["usage"] == USAGE and events[-1]["message"]["content"] == "好的"


def test_usage_that_arrived_before_the_connection_broke_is_kept(api, upstream):
    upstream.script({"frames": [DELTA, FINISH, frame([], usage=USAGE)], "ending": "cut"})
    events = stream(api, "你好")
    assert events[-1]["type"] == "done", events
    assert events[-1]["message"]["usage"] == USAGE


def test_a_stream_cut_after_its_finish_but_before_the_usage_is_whole_without_usage(api, upstream):
    upstream.script({"frames": [DELTA, FINISH], "ending": "cut"})
    events = stream(api, "你好")
    assert events[-1]["type"] == "done", events
    assert "usage" not in events[-1]["message"]


# ---- the report: days, window, time zone -----------------------------------------------------------


@pytest.mark.parametrize("days", ["0", "367", "-1", "abc", "1.5", "30x", "1e3"])
def test_bad_days_are_refused_with_a_clear_400(api, days):
    response = api.get("/api/usage", params={"days": days})
    assert response.status_code == 400, response.text
    assert response.json()["success"] is False and response.json()["code"] == "invalid_days"


@pytest.mark.parametrize(("days", "answered"), [("", 30), ("1", 1), ("366", 366)])
def test_days_within_bounds_are_answered(api, days, answered):
    response = api.get("/api/usage", params={"days": days})
    assert response.status_code == 200, response.text
    assert response.json()["days"] == answered


def stored(at: datetime, usage: dict, role: str = "assistant") -> dict:
    return {"role": role, "content": "…", "timestamp": at.isoformat(), "usage": usage}


def test_days_are_counted_in_timezone_and_the_window_ends_at_its_first_day(api):
    now = datetime.now(ZONE)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Today in Asia/Shanghai but yesterday in UTC: any moment in the first eight hours of the local day.
    early = midnight + min((now - midnight) / 2, timedelta(hours=7))
    conversations = Conversations(api.settings)  # the app's data, as another process would write it
    made = conversations.create(
        "旧的",
        messages=[
            stored(midnight - timedelta(days=1, hours=1), {"prompt_tokens": 1000, "completion_tokens": 1}),
            stored(midnight - timedelta(minutes=30), {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}),
            stored(early, {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15}),
            stored(early, {"prompt_tokens": 99, "completion_tokens": 99, "total_tokens": 198}, role="user"),
        ],
    )
    today, yesterday = midnight.date(), (midnight - timedelta(days=1)).date()

    one = api.get("/api/usage", params={"days": 1}).json()
    assert (one["since"], one["today"], one["timezone"]) == (today.isoformat(), today.isoformat(), "Asia/Shanghai")
    assert one["by_day"] == [
        {"date": today.isoformat(), "prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15, "messages": 1}
    ]

    three = api.get("/api/usage", params={"days": 3}).json()
    assert [day["date"] for day in three["by_day"]] == [
        (today - timedelta(days=2)).isoformat(),
        yesterday.isoformat(),
        today.isoformat(),
    ]
    assert three["by_day"][0]["total_tokens"] == 1001  # no total sent: prompt + completion
    assert three["total"]["messages"] == 3 and three["total"]["total_tokens"] == 1001 + 11 + 15
    assert three["by_conversation"] == [{"conversation_id": made["id"], "title": "旧的", **three["total"]}]

    two = api.get("/api/usage", params={"days": 2}).json()
    assert two["total"]["total_tokens"] == 11 + 15  # the one from the day before yesterday is outside it

    api.delete("/api/history", params={"conversation_id": made["id"]})
    assert api.get("/api/usage", params={"days": 3}).json()["by_conversation"] == []  # cleared: no longer counted


def test_a_short_window_reads_no_archive_of_older_messages(tmp_path, caplog):
    settings = load_settings(
        {"API_KEY": "sk-x", "CHAT_HISTORY_FILE": str(tmp_path / "chat_history.json"), "TIMEZONE": "Asia/Shanghai"}
    )
    conversations = Conversations(settings)
    now = datetime.now(ZONE)
    old = [stored(now - timedelta(days=100, minutes=n), {"total_tokens": 1}) for n in range(2000, 0, -1)]
    recent = [stored(now - timedelta(minutes=n), {"total_tokens": 2}) for n in range(300, 0, -1)]
    made = conversations.create("长对话", messages=old + recent)
    archives = sorted((settings.data_dir / "conversations" / f"{made['id']}-archive").glob("*.json"))
    assert len(archives) > 10
    for archive in archives[:-7]:  # the oldest, wholly 100 days old and more than a page before the window
        archive.write_text("not json")
    report = UsageReport(conversations, settings.timezone)
    with caplog.at_level(logging.ERROR):
        assert report.report(30)["total"] == {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 600,
            "messages": 300,
        }
        assert "unreadable" not in caplog.text
        report.report(366)  # a window reaching them must read them: the archives were really there to read
        assert "unreadable" in caplog.text


def test_a_report_follows_a_conversation_that_changed_since_the_last_one(tmp_path):
    settings = load_settings({"API_KEY": "sk-x", "CHAT_HISTORY_FILE": str(tmp_path / "h.json"), "TIMEZONE": "UTC"})
    conversations = Conversations(settings)
    made = conversations.create("a", messages=[stored(datetime.now(ZONE), {"total_tokens": 3})])
    report = UsageReport(conversations, settings.timezone)
    assert report.report(7)["total"]["total_tokens"] == 3
    assert report.report(7)["total"]["total_tokens"] == 3
    conversations.store(made["id"]).append("assistant", "more", usage={"total_tokens": 4})
    assert report.report(7)["total"]["total_tokens"] == 7
    conversations.change(made["id"], title="b")
    assert report.report(30)["by_conversation"][0]["title"] == "b"
