"""POST /api/chat/stream: server-sent events relayed as the upstream sends them."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.support.client import app_env
from tests.support.servers import Gunicorn
from tests.support.waiting import wait_until


def read_events(response: requests.Response) -> list[dict]:
    events = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    return events


def stream(api, message: str, **kwargs) -> requests.Response:
    return api.post("/api/chat/stream", json={"message": message}, stream=True, **kwargs)


def test_stream_relays_reasoning_then_deltas_then_done(api, upstream):
    upstream.script({"content": "你好，世界！这是流式回复。", "reasoning": "用户在打招呼"})
    response = stream(api, "你好")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Accel-Buffering"] == "no"
    events = read_events(response)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert "".join(e["content"] for e in events if e["type"] == "reasoning") == "用户在打招呼"
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "你好，世界！这是流式回复。"
    assert kinds.index("reasoning") < kinds.index("delta")
    done = events[-1]["message"]
    assert done["content"] == "你好，世界！这是流式回复。" and done["reasoning"] == "用户在打招呼"
    assert api.history()[-1] == done


def test_whole_streamed_replies_use_one_connection_to_the_api(api, upstream):
    for question in ("第一句", "第二句", "第三句"):
        assert read_events(stream(api, question))[-1]["type"] == "done"
    assert api.chat("再来一句整段的").status_code == 200
    assert upstream.connections == 1  # each reply left the connection in the pool for the next


def test_a_stream_cut_before_its_end_does_not_leave_its_connection_in_the_pool(api, upstream):
    upstream.script({"content": "半截", "ending": "cut"})
    assert read_events(stream(api, "说一半"))[-1]["type"] == "error"
    assert read_events(stream(api, "说完整"))[-1]["type"] == "done"
    assert upstream.connections == 2


def test_utf8_split_across_network_chunks_is_never_garbled(api, upstream):
    text = "汉字🙂混合emoji与中文标点，。！"
    upstream.script({"content": text, "split_bytes": 5})
    events = read_events(stream(api, "切开"))
    assert "".join(e["content"] for e in events if e["type"] == "delta") == text
    assert events[-1]["message"]["content"] == text


def test_deltas_arrive_as_the_upstream_sends_them(api, upstream):
    upstream.script({"content": "一二三四五六", "pieces": ["一二", "三四", "五六"], "chunk_delay": 0.4})
    response = stream(api, "慢慢说")
    arrivals = []
    for line in response.iter_lines():
        if line.startswith(b"data: ") and json.loads(line[6:])["type"] == "delta":
            arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] > 0.6  # not buffered until the end


def test_stream_cut_without_finish_is_an_error_and_keeps_the_partial(api, upstream):
    upstream.script({"content": "半句话", "ending": "cut"})
    events = read_events(stream(api, "说完"))
    assert events[-1]["type"] == "error"
    assert events[-1]["code"] == "upstream_incomplete"
    stored = api.history()[-1]
    assert stored["content"] == "半句话" and stored["incomplete"] is True


def test_malformed_chunk_is_an_error(api, upstream):
    upstream.script({"content": "好", "ending": "bad_chunk"})
    events = read_events(stream(api, "坏块"))
    assert events[-1] == {
        "type": "error",
        "error": events[-1]["error"],
        "code": "upstream_bad_response",
        "message": api.history()[-1],
    }
    assert events[-1]["message"]["content"] == "好" and events[-1]["message"]["incomplete"] is True


def test_refusal_before_streaming_is_plain_json_with_status(api, upstream):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    response = stream(api, "你好")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_auth_failed"


def test_a_client_that_leaves_mid_reply_does_not_stop_it(api, upstream):
    pieces = [f"第{i}段。" for i in range(30)]  # 1.5 s: still streaming when the client leaves
    upstream.script({"content": "".join(pieces), "pieces": pieces, "chunk_delay": 0.05})
    response = stream(api, "讲个长故事")
    received = 0
    for line in response.iter_lines():
        if line.startswith(b"data: ") and json.loads(line[6:])["type"] == "delta":
            received += 1
            if received == 3:
                break
    response.close()
    last = wait_until(
        lambda: not (newest := api.history()[-1]).get("streaming") and newest, 15, message="the reply finished"
    )
    assert last["content"] == "".join(pieces)
    assert "stopped" not in last and "incomplete" not in last
    assert not upstream.closed_streams.is_set()


def test_a_stream_cut_after_its_finish_reason_is_complete(api, upstream):
    upstream.script(
        {
            "frames": [
                '{"choices": [{"delta": {"content": "完整"}, "finish_reason": null}]}',
                '{"choices": [{"delta": {}, "finish_reason": "stop"}]}',
            ],
            "ending": "cut",
        }
    )
    events = read_events(stream(api, "说完了吗"))
    assert events[-1]["type"] == "done"
    assert events[-1]["message"]["content"] == "完整" and "incomplete" not in events[-1]["message"]


@pytest.mark.parametrize(
    "frame",
    [
        '{"choices": [{"delta": "text"}]}',
        '{"choices": ["text"]}',
        '{"choices": [{"delta": {"content": 42}}]}',
        "[1, 2]",
    ],
)
def test_stream_events_of_the_wrong_shape_are_a_bad_response(api, upstream, frame):
    upstream.script({"frames": ['{"choices": [{"delta": {"content": "前半"}}]}', frame], "ending": "cut"})
    events = read_events(stream(api, "怪事件"))
    assert events[-1]["type"] == "error" and events[-1]["code"] == "upstream_bad_response"
    stored = api.history()[-1]
    assert stored["content"] == "前半" and stored["incomplete"] is True and "stopped" not in stored


def test_retrying_a_cut_reply_asks_the_question_again_without_storing_it_twice(api, upstream):
    upstream.script({"content": "半句", "ending": "cut"})
    events = read_events(stream(api, "再说一遍"))
    question = events[0]["user_message"]
    assert events[-1]["code"] == "upstream_incomplete"
    retried = read_events(
        api.post("/api/chat/stream", json={"message": "再说一遍", "retry_of": question["id"]}, stream=True)
    )
    assert retried[0]["user_message"] == question
    assert retried[-1]["message"]["content"] == "收到：再说一遍"
    assert upstream.requests[-1]["messages"][-1] == {"role": "user", "content": "再说一遍"}
    assert [m["content"] for m in api.history()] == ["再说一遍", "半句", "收到：再说一遍"]


def test_a_lone_surrogate_from_the_model_is_streamed_replaced_through_gunicorn(upstream, tmp_path):
    env = app_env(upstream, tmp_path / "data", DOTENV_PATH="/nonexistent")
    # The fake upstream sends these as the JSON escapes \ud800 and \udfff, as a provider's encoder would.
    upstream.script({"pieces": ["坏\ud800", "字之后"], "reasoning": "想\udfff"})
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "-w", "1"], tmp_path / "gunicorn.log") as server:
        with requests.post(server.base_url + "/api/chat/stream", json={"message": "说"}, stream=True, timeout=30) as r:
            events = read_events(r)
        history = requests.get(server.base_url + "/api/history", timeout=30).json()["messages"]
    assert [e["type"] for e in events][-1] == "done", events
    assert "".join(e["content"] for e in events if e["type"] == "delta") == "坏\ufffd字之后"
    assert events[-1]["message"]["content"] == "坏\ufffd字之后"
    assert events[-1]["message"]["reasoning"] == "想\ufffd"
    assert history[-1] == events[-1]["message"]
    log = (tmp_path / "data" / "conversations" / "main.jsonl").read_bytes().decode("utf-8")  # strict UTF-8
    assert json.loads(log.splitlines()[-1])["fields"]["content"] == "坏\ufffd字之后"  # the reply's finish line
    assert "Traceback" not in server.log_text()


def test_a_refused_stream_is_stored_as_a_failed_turn(api, upstream):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    response = stream(api, "被拒绝")
    assert response.status_code == 502
    question, record = api.history()
    assert question == response.json()["user_message"]
    assert {key: record.get(key) for key in ("role", "content", "reply_to", "incomplete", "error", "error_code")} == {
        "role": "assistant",
        "content": "",
        "reply_to": question["id"],
        "incomplete": True,
        "error": response.json()["error"],
        "error_code": "upstream_auth_failed",
    }


def test_a_stream_that_fails_before_any_text_is_stored_as_a_failed_turn_and_can_be_retried(api, upstream):
    upstream.script({"frames": ['{"choices": [{"delta": {"role": "assistant"}}]}', "[1, 2]"], "ending": "cut"})
    events = read_events(stream(api, "没有回答"))
    question, error = events[0]["user_message"], events[-1]
    assert [e["type"] for e in events] == ["start", "error"] and error["code"] == "upstream_bad_response"
    record = api.history()[-1]
    assert (record["role"], record["content"], record["reply_to"]) == ("assistant", "", question["id"])
    assert (record["incomplete"], record["error"], record["error_code"]) == (True, error["error"], error["code"])

    retried = read_events(
        api.post("/api/chat/stream", json={"message": "没有回答", "retry_of": question["id"]}, stream=True)
    )
    assert retried[0]["user_message"] == question  # asked again, not stored again
    assert retried[-1]["message"]["content"] == "收到：没有回答"
    assert upstream.requests[-1]["messages"][1:] == [{"role": "user", "content": "没有回答"}]  # no empty turn
    assert [(m["role"], m["content"]) for m in api.history()] == [
        ("user", "没有回答"),
        ("assistant", ""),
        ("assistant", "收到：没有回答"),
    ]
