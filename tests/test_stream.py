"""POST /api/chat/stream: server-sent events relayed as the upstream sends them."""

from __future__ import annotations

import json
import time

import pytest
import requests

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
    assert events[-1] == {"type": "error", "error": events[-1]["error"], "code": "upstream_bad_response"}


def test_refusal_before_streaming_is_plain_json_with_status(api, upstream):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    response = stream(api, "你好")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_auth_failed"


def test_client_disconnect_closes_upstream_and_stores_partial_as_stopped(api, upstream):
    pieces = [f"第{i}段。" for i in range(40)]
    upstream.script({"content": "".join(pieces), "pieces": pieces, "chunk_delay": 0.1})
    response = stream(api, "讲个长故事")
    received = 0
    for line in response.iter_lines():
        if line.startswith(b"data: ") and json.loads(line[6:])["type"] == "delta":
            received += 1
            if received == 3:
                break
    response.close()
    assert upstream.closed_streams.wait(10), "the upstream stream was not closed"
    last = wait_until(
        lambda: (newest := api.history()[-1])["role"] == "assistant" and newest, 5, message="the partial reply stored"
    )
    assert last["stopped"] is True
    assert last["content"].startswith("第0段。第1段。第2段。")
    assert len(last["content"]) < len("".join(pieces))


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
