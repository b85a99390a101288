"""Reminders set by talking: the model's tool calls (native or written as text), their fallbacks, and the turn gate."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

import pytest
import requests

from reminder_tools import ToolCallFilter
from scheduler import leader_pid
from tests.support.waiting import wait_until
from tests.test_reminders import ZONE, gunicorn, in_a_while, local, reminder_messages
from tests.test_stream import read_events, stream

TOOL_NAMES = ["create_reminder", "list_reminders", "update_reminder", "cancel_reminder"]


def create_call(**arguments: object) -> dict:
    """A scripted model answer that calls create_reminder."""
    return {"tool_calls": [{"name": "create_reminder", "arguments": arguments}]}


def user_reminders(api) -> list[dict]:
    return [r for r in api.get("/api/reminders").json()["reminders"] if r["source"] == "user"]


def tool_results(request: dict) -> list[dict]:
    """The `tool` messages the app sent the model, with their results decoded."""
    return [{**m, "result": json.loads(m["content"])} for m in request["messages"] if m["role"] == "tool"]


# ---- native tool calls -------------------------------------------------------------------------


def test_a_tool_call_creates_the_reminder_and_the_model_answers_with_its_result(api, upstream):
    at = in_a_while(days=1)
    upstream.script(create_call(text="吃药", at=at), {"content": "好的，明天这个时候提醒你吃药。"})
    response = api.chat("明天这个时候提醒我吃药")
    assert response.status_code == 200, response.text
    message = response.json()["message"]
    assert message["content"] == "好的，明天这个时候提醒你吃药。"
    [action] = message["reminder_actions"]
    assert action["action"] == "created"
    card = action["reminder"]
    assert (card["text"], card["at"], card["timezone"]) == ("吃药", at, "Asia/Shanghai")
    assert card["next_runs"] == [datetime.fromisoformat(at).replace(tzinfo=ZONE).isoformat()]
    assert [r["id"] for r in user_reminders(api)] == [card["id"]]

    first, second = upstream.requests
    assert [tool["function"]["name"] for tool in first["tools"]] == TOOL_NAMES
    now = datetime.now(ZONE)
    system = first["messages"][0]["content"]
    assert now.strftime("%Y-%m-%d") in system and now.strftime("%A") in system and "Asia/Shanghai" in system
    asked = second["messages"][-2]
    assert asked["role"] == "assistant" and asked["tool_calls"][0]["function"]["name"] == "create_reminder"
    [result] = tool_results(second)
    assert result["tool_call_id"] == asked["tool_calls"][0]["id"]
    assert result["result"]["ok"] is True and result["result"]["reminder"]["id"] == card["id"]
    # One turn, two requests: their tokens add up; the tool round itself is not kept in the history.
    assert len(upstream.usages_sent) == 2
    assert message["usage"]["prompt_tokens"] == sum(usage["prompt_tokens"] for usage in upstream.usages_sent)
    assert [(m["role"], m["content"]) for m in api.history()] == [
        ("user", "明天这个时候提醒我吃药"),
        ("assistant", "好的，明天这个时候提醒你吃药。"),
    ]
    assert api.history()[-1] == message


def test_a_streamed_tool_call_sends_the_card_before_the_model_confirms(api, upstream):
    upstream.script(
        create_call(text="开会", cron="0 9 * * 1-5", mode="plain"), {"content": "好的，每个工作日九点提醒你开会。"}
    )
    events = read_events(stream(api, "每个工作日早上9点提醒我开会"))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done", events
    reminder = events[kinds.index("reminder")]
    assert kinds.index("reminder") < kinds.index("delta")
    assert reminder["action"] == "created" and reminder["reminder"]["cron"] == "0 9 * * 1-5"
    assert reminder["reminder"]["mode"] == "plain" and len(reminder["reminder"]["next_runs"]) == 3
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "好的，每个工作日九点提醒你开会。"
    done = events[-1]["message"]
    assert done["reminder_actions"] == [{"action": "created", "reminder": reminder["reminder"]}]
    assert api.history()[-1] == done and len(api.history()) == 2
    assert "tools" in upstream.requests[0] and tool_results(upstream.requests[1])[0]["result"]["ok"] is True


def test_update_list_and_cancel_are_carried_out_and_shown(api, upstream):
    reminder = api.post("/api/reminders", json={"text": "喝水", "cron": "0 10 * * *"}).json()["reminder"]
    update = {"name": "update_reminder", "arguments": {"id": int(reminder["id"]), "cron": "30 10 * * *"}}
    upstream.script({"tool_calls": [{"name": "list_reminders", "arguments": {}}, update]}, {"content": "改好了"})
    message = api.chat("把喝水提醒改到10点半").json()["message"]
    [updated] = message["reminder_actions"]
    assert updated["action"] == "updated" and updated["reminder"]["cron"] == "30 10 * * *"
    assert updated["previous"]["cron"] == "0 10 * * *" and updated["previous"]["text"] == "喝水"
    listed = tool_results(upstream.requests[1])[0]["result"]
    assert [r["id"] for r in listed["reminders"]] == [reminder["id"]]

    upstream.script({"tool_calls": [{"name": "cancel_reminder", "arguments": {"id": reminder["id"]}}]}, {})
    message = api.chat("取消喝水提醒").json()["message"]
    assert message["reminder_actions"][0]["action"] == "cancelled"
    assert message["reminder_actions"][0]["reminder"]["cron"] == "30 10 * * *"
    assert user_reminders(api) == []


def test_an_invalid_call_is_refused_to_the_model_with_the_reason(api, upstream):
    upstream.script(
        create_call(text="吃药", at="2020-01-01T08:00:00"),
        {"tool_calls": [{"name": "cancel_reminder", "arguments": {"id": "99"}}]},
        {"content": "抱歉，那个时间已经过去了。"},
    )
    response = api.chat("2020年元旦提醒我吃药")
    assert response.status_code == 200, response.text
    message = response.json()["message"]
    assert message["content"] == "抱歉，那个时间已经过去了。" and "reminder_actions" not in message
    past = tool_results(upstream.requests[1])[0]["result"]
    assert past["ok"] is False and "in the past" in past["error"]
    missing = tool_results(upstream.requests[2])[-1]["result"]
    assert missing == {"ok": False, "error": "There is no reminder '99'."}
    assert user_reminders(api) == []


def test_a_turn_retried_after_its_tool_ran_does_not_make_the_reminder_twice(api, upstream):
    at = in_a_while(days=1)
    unauthorised = {"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}}
    upstream.script(create_call(text="吃药", at=at), unauthorised)  # the reminder is made, then the turn fails
    failed = api.chat("明天这个时候提醒我吃药")
    assert failed.status_code == 502 and len(user_reminders(api)) == 1
    question = failed.json()["user_message"]["id"]
    upstream.script(create_call(text="吃药", at=at), {"content": "好的。"})
    retried = api.post("/api/chat", json={"message": "明天这个时候提醒我吃药", "retry_of": question})
    [action] = retried.json()["message"]["reminder_actions"]
    assert [r["id"] for r in user_reminders(api)] == [action["reminder"]["id"]]
    upstream.script(create_call(text="吃药", at=in_a_while(days=2)), {"content": "好的。"})  # another time: another
    assert api.chat("后天也提醒我").status_code == 200 and len(user_reminders(api)) == 2
    paused = user_reminders(api)[0]["id"]
    assert api.session.patch(f"{api.base_url}/api/reminders/{paused}", json={"enabled": False}).status_code == 200
    upstream.script(create_call(text="吃药", at=at), {"content": "好的。"})  # a paused one is not the same reminder
    assert api.chat("还是明天这个时候提醒我吃药").status_code == 200 and len(user_reminders(api)) == 3


def test_tool_rounds_are_bounded(api, upstream):
    listing = {"tool_calls": [{"name": "list_reminders", "arguments": {}}]}
    upstream.script(*[listing] * 5)
    response = api.chat("列出提醒")
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 4  # three rounds with tools, then one without, which must answer in words
    assert "tools" not in upstream.requests[-1]


# ---- fallbacks for small models ----------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
def test_a_provider_refusing_tools_is_asked_again_without_them_and_the_phrase_grammar_sets_it(api, upstream, streamed):
    upstream.script({"kind": "status", "status": 400, "body": {"error": {"message": "tools are not supported"}}})
    if streamed:
        events = read_events(stream(api, "明天早上8点提醒我吃药"))
        assert [e["type"] for e in events][:2] == ["start", "reminder"]
        message = events[-1]["message"]
    else:
        response = api.chat("明天早上8点提醒我吃药")
        assert response.status_code == 200, response.text
        message = response.json()["message"]
    with_tools, without = upstream.requests
    assert "tools" in with_tools and "tools" not in without
    tomorrow = (datetime.now(ZONE) + timedelta(days=1)).date()
    [action] = message["reminder_actions"]
    assert action["reminder"]["at"] == f"{tomorrow.isoformat()}T08:00:00" and action["reminder"]["text"] == "吃药"
    assert "has just created the reminder" in without["messages"][0]["content"]
    assert [r["id"] for r in user_reminders(api)] == [action["reminder"]["id"]]


def test_a_call_written_as_text_is_carried_out_and_never_shown(api, upstream):
    at = in_a_while(hours=2)
    written = json.dumps({"name": "create_reminder", "arguments": {"text": "取快递", "at": at}}, ensure_ascii=False)
    upstream.script({"content": f"好的。<tool_call>\n{written}\n</tool_call>"}, {"content": "两小时后提醒你取快递。"})
    message = api.chat("两小时后提醒我取快递").json()["message"]
    assert message["content"] == "好的。\n\n两小时后提醒你取快递。"
    assert message["reminder_actions"][0]["reminder"]["at"] == at
    assert tool_results(upstream.requests[1])[0]["result"]["ok"] is True
    assert "tool_call" not in json.dumps(api.history(), ensure_ascii=False)


def test_a_streamed_call_written_as_text_never_shows_its_tag(api, upstream):
    at = in_a_while(hours=2)
    written = json.dumps({"name": "create_reminder", "arguments": {"text": "取快递", "at": at}}, ensure_ascii=False)
    text = f"好的<tool_call>{written}</tool_call>"
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]  # the tag arrives cut into bits
    upstream.script({"content": text, "pieces": pieces}, {"content": "已设置。"})
    events = read_events(stream(api, "两小时后提醒我取快递"))
    shown = "".join(e["content"] for e in events if e["type"] == "delta")
    assert shown == "好的\n\n已设置。"
    assert [e["type"] for e in events].count("reminder") == 1
    assert events[-1]["message"]["content"] == shown and events[-1]["message"]["reminder_actions"]


@pytest.mark.parametrize(
    ("pieces", "shown", "calls"),
    [
        (["a <", "b"], "a <b", 0),  # a "<" that turns out not to start a tag is shown, late but whole
        (["x<tool_", 'call>{"name": "list_reminders"}</tool_call>y'], "xy", 1),
        (['<tool_call>{"name": "list_reminders", "arguments": {}}'], "", 1),  # never closed, still a call
        (["<tool_call>not json"], "<tool_call>not json", 0),
    ],
)
def test_the_stream_filter_holds_back_only_what_may_be_a_tag(pieces, shown, calls):
    hidden = ToolCallFilter()
    assert "".join(hidden.feed(piece) for piece in pieces) + hidden.finish() == shown
    assert len(hidden.calls) == calls


def test_with_reminder_tools_off_the_phrase_grammar_sets_the_reminder(serve, upstream):
    api = serve(REMINDER_TOOLS="false")
    upstream.script({"content": "好的，明天早上8点提醒你吃药。"})
    message = api.chat("明天早上8点提醒我吃药").json()["message"]
    [request] = upstream.requests
    assert "tools" not in request
    assert "吃药" in request["messages"][0]["content"] and "has just created" in request["messages"][0]["content"]
    [action] = message["reminder_actions"]
    assert action["action"] == "created" and action["reminder"]["at"].endswith("T08:00:00")
    assert [r["id"] for r in user_reminders(api)] == [action["reminder"]["id"]]
    api.chat("你好")  # not a reminder request: nothing set, nothing said about it
    assert "has just created" not in upstream.requests[-1]["messages"][0]["content"]
    assert len(user_reminders(api)) == 1


# ---- end to end under Gunicorn -----------------------------------------------------------------


def test_a_reminder_set_by_talking_arrives_six_seconds_later(upstream, tmp_path):
    data_dir = tmp_path / "data"
    with gunicorn(upstream, tmp_path, workers=2) as server:
        wait_until(lambda: leader_pid(data_dir), 15, message="a leader")
        asked = datetime.now(ZONE).replace(microsecond=0)
        due = asked + timedelta(seconds=6)
        upstream.script(create_call(text="喝水", at=local(due)), {"content": "好的，6秒后提醒你喝水。"})
        response = requests.post(server.base_url + "/api/chat", json={"message": "6秒后提醒我喝水"}, timeout=30)
        assert response.status_code == 200, response.text
        reminder = response.json()["message"]["reminder_actions"][0]["reminder"]
        assert (
            requests.get(server.base_url + "/api/reminders", timeout=10).json()["reminders"][1]["id"] == reminder["id"]
        )
        sent = wait_until(lambda: reminder_messages(data_dir), 30, message="the reminder's message")
        arrived = time.time()
    assert sent[0]["reminder_id"] == reminder["id"] and sent[0]["scheduled_for"] == due.isoformat()
    assert "喝水" in sent[0]["content"]
    assert 0 <= arrived - due.timestamp() < 5, f"arrived {arrived - due.timestamp():.2f} s after its time"
    print(f"\n6秒后提醒我喝水: the message arrived {arrived - asked.timestamp():.1f} s after the request")


def test_a_reminder_due_mid_reply_is_stored_right_after_the_reply(upstream, tmp_path):
    with gunicorn(upstream, tmp_path, workers=2) as server:
        created = requests.post(
            server.base_url + "/api/reminders",
            json={"text": "站起来走走", "cron": "0 3 * * *", "mode": "plain"},
            timeout=10,
        ).json()["reminder"]
        slow = ["慢", "慢", "地", "说", "完", "这", "句", "话"]
        upstream.script({"content": "".join(slow), "pieces": slow, "chunk_delay": 0.3})
        response = requests.post(
            server.base_url + "/api/chat/stream", json={"message": "慢慢说"}, stream=True, timeout=30
        )
        lines = response.iter_lines()
        events = []
        for line in lines:  # until the reply is under way
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == "delta":
                    break
        ran: dict = {}
        run = threading.Thread(
            target=lambda: ran.update(
                requests.post(f"{server.base_url}/api/reminders/{created['id']}/run", json={}, timeout=60).json()
            )
        )
        run.start()
        events += [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
        run.join(60)
    reply = events[-1]["message"]
    assert events[-1]["type"] == "done" and reply["content"] == "慢慢地说完这句话"
    assert ran["message"]["content"] == "站起来走走"
    assert ran["message"]["id"] == reply["id"] + 1, "the reminder landed between the question and its answer"


def test_streamed_call_fragments_without_an_index_make_one_call(api, upstream):
    at = in_a_while(days=2)
    arguments = json.dumps({"text": "交房租", "at": at}, ensure_ascii=False)

    def frame(delta: dict, finish: str | None = None) -> str:
        return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, ensure_ascii=False)

    frames = [frame({"tool_calls": [{"id": "call_a", "function": {"name": "create_reminder", "arguments": ""}}]})]
    frames += [frame({"tool_calls": [{"function": {"arguments": arguments[i : i + 5]}}]}) for i in range(0, 40, 5)]
    frames += [frame({"tool_calls": [{"function": {"arguments": arguments[40:]}}]}), frame({}, "tool_calls"), "[DONE]"]
    upstream.script({"frames": frames, "ending": "none"}, {"content": "好的"})
    events = read_events(stream(api, "后天这个时候提醒我交房租"))
    assert [e["type"] for e in events] == ["start", "reminder", "delta", "done"], events
    assert events[1]["reminder"]["text"] == "交房租" and events[1]["reminder"]["at"] == at


def test_an_escaped_lone_surrogate_in_the_arguments_is_stored_replaced(api, upstream):
    at = in_a_while(days=1)
    escaped = json.dumps({"text": "喝水\ud800", "at": at})  # "\\ud800": JSON text can carry what UTF-8 cannot
    upstream.script({"tool_calls": [{"name": "create_reminder", "arguments": escaped}]}, {"content": "好的"})
    response = api.chat("明天提醒我喝水")
    assert response.status_code == 200, response.text
    assert response.json()["message"]["reminder_actions"][0]["reminder"]["text"] == "喝水\ufffd"
    assert [r["text"] for r in user_reminders(api)] == ["喝水\ufffd"]
