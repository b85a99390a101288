"""The REST API as a curl user meets it: the spec's shapes, validation and error JSON."""

from __future__ import annotations

import json

import pytest
import requests

from config import HISTORY_PAGE_MAX
from tests.support.client import app_env
from tests.support.fake_upstream import API_KEY
from tests.support.servers import Gunicorn

TOKEN = "a-token-long-enough-for-any-rule-0123"


def test_chat_replies_and_stores_both_messages(api, upstream):
    response = api.chat("你好，助手")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["reply"] == "收到：你好，助手"
    assert body["message"]["role"] == "assistant"

    messages = api.history()
    assert [(m["role"], m["content"], m["is_scheduled"]) for m in messages] == [
        ("user", "你好，助手", False),
        ("assistant", "收到：你好，助手", False),
    ]
    for message in messages:
        assert isinstance(message["id"], int)
        assert message["timestamp"].endswith("+08:00")  # ISO-8601 with the configured zone's offset
    assert messages[1]["reply_to"] == messages[0]["id"]
    assert upstream.headers[0]["Authorization"] == f"Bearer {API_KEY}"


def test_reasoning_is_kept_apart_from_the_reply(api, upstream):
    upstream.script({"content": "答案是 42。", "reasoning": "先想一想……"})
    body = api.chat("生命的意义？").json()
    assert body["reply"] == "答案是 42。"
    assert body["message"]["reasoning"] == "先想一想……"
    assert api.history()[-1]["reasoning"] == "先想一想……"


def test_health_reports_scheduler_and_configuration(api):
    body = api.get("/api/health").json()
    assert body == {
        "status": "ok",
        "scheduler_running": False,
        "scheduler_enabled": False,
        "chat_configured": True,
        "auth_required": False,
        "max_message_chars": 8000,
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("not json at all", "invalid_json"),
        ("[1, 2, 3]", "invalid_json"),
        ('"just a string"', "invalid_json"),
        ("{}", "missing_message"),
        ('{"message": 42}', "invalid_message"),
        ('{"message": null}', "invalid_message"),
        ('{"message": ""}', "empty_message"),
        ('{"message": "   \\n\\t "}', "empty_message"),
        ('{"message": "\\ud800"}', "invalid_message"),  # a lone surrogate cannot be stored as UTF-8
        ('"{\\"message\\": \\"a JSON string holding JSON\\"}"', "invalid_json"),  # never decoded twice
    ],
)
def test_bad_chat_bodies_get_400_json(api, upstream, payload, code):
    response = api.post("/api/chat", data=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": response.json()["error"], "code": code}
    assert response.json()["error"]
    assert upstream.requests == []


def test_too_long_message_gets_413(serve, upstream):
    api = serve(MAX_MESSAGE_CHARS="10")
    response = api.chat("这条消息一共超过了十个字符")
    assert response.status_code == 413
    assert response.json()["code"] == "message_too_long"
    assert "10" in response.json()["error"]
    assert upstream.requests == []


def test_too_long_message_gets_413_even_before_an_api_key_is_set(serve, upstream):
    api = serve(API_KEY="", MAX_MESSAGE_CHARS="10")
    response = api.chat("十一个字符太长了吧是的")
    assert response.status_code == 413
    assert response.json()["code"] == "message_too_long"


def test_body_over_the_byte_limit_gets_413_json(serve):
    api = serve(MAX_BODY_BYTES="2048")
    response = api.chat("x" * 5000)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_missing_api_key_gives_503_but_page_and_history_work(serve, upstream):
    api = serve(API_KEY="")
    response = api.chat("你好")
    assert response.status_code == 503
    assert response.json()["code"] == "not_configured"
    assert "API_KEY" in response.json()["error"]
    assert api.get("/api/health").json()["chat_configured"] is False
    assert api.get("/api/history").status_code == 200
    assert api.get("/").status_code == 200
    assert upstream.requests == []


def test_unknown_api_route_is_json_404(api):
    response = api.get("/api/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_wrong_method_is_json_405(api):
    response = api.get("/api/chat")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", f"limit={HISTORY_PAGE_MAX + 1}", "before=0", "before=x"])
def test_bad_history_parameters_get_400(api, query):
    response = api.get(f"/api/history?{query}")
    assert response.status_code == 400
    assert response.json()["code"].startswith("invalid_")


def test_history_pages_back_with_before(serve):
    api = serve(HISTORY_PAGE_SIZE="4")
    for number in range(5):
        assert api.chat(f"第{number}条").status_code == 200
    first = api.get("/api/history").json()
    assert [m["content"] for m in first["messages"]] == ["第3条", "收到：第3条", "第4条", "收到：第4条"]
    assert first["has_more"] is True
    older = api.get("/api/history", params={"before": first["messages"][0]["id"], "limit": 10}).json()
    assert len(older["messages"]) == 6
    assert older["messages"][0]["content"] == "第0条"
    assert older["has_more"] is False


def test_clear_history_archives_and_empties(api, tmp_path):
    api.chat("记住我")
    response = api.delete("/api/history")
    assert response.json() == {"success": True, "cleared": 2}
    assert api.history() == []
    assert api.get("/api/history").json()["has_more"] is False
    archived = list((tmp_path / "data" / "conversations" / "main-archive").glob("*.json"))
    assert len(archived) == 1 and "记住我" in archived[0].read_text()
    api.chat("新的开始")
    assert [m["content"] for m in api.history()] == ["新的开始", "收到：新的开始"]


def test_context_carries_system_prompt_and_recent_turns(serve, upstream):
    api = serve(SYSTEM_PROMPT="你是测试助手", CONTEXT_MAX_MESSAGES="3")
    for number in range(4):
        api.chat(f"问题{number}")
    sent = upstream.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("你是测试助手\n")  # then the local time
    assert sent[1:] == [
        {"role": "user", "content": "问题2"},
        {"role": "assistant", "content": "收到：问题2"},
        {"role": "user", "content": "问题3"},
    ]


def test_context_respects_the_character_budget(serve, upstream):
    api = serve(CONTEXT_MAX_CHARS="20")
    api.chat("一二三四五六七八九十")
    api.chat("短")
    sent = upstream.requests[-1]["messages"]
    # "短" (1) + the last reply (13) fit in 20 characters; the first question (10) does not
    assert [m["content"] for m in sent[1:]] == ["收到：一二三四五六七八九十", "短"]


def test_a_failed_turn_does_not_break_the_next_context(api, upstream):
    # Twice: a 400 to a request with reminder tools is asked again without them.
    upstream.script(*[{"kind": "status", "status": 400, "body": {"code": 20015, "message": "bad"}}] * 2)
    assert api.chat("失败的问题").status_code == 502
    assert api.chat("第二个问题").status_code == 200
    sent = upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[-1]["content"] == "第二个问题"
    # nothing was lost: the failed question is still in the history
    assert [m["content"] for m in api.history()][:1] == ["失败的问题"]


def test_api_key_never_appears_in_responses(api, upstream):
    upstream.script(
        {"kind": "status", "status": 401, "body": {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}}
    )
    responses = [
        api.chat("hi"),
        api.get("/api/health"),
        api.get("/api/history"),
        api.get("/"),
        api.get("/api/schedule"),
    ]
    for response in responses:
        assert API_KEY not in response.text
    assert "***" in responses[0].json()["error"]


def test_history_after_returns_only_newer_messages(api):
    api.chat("一")
    newest = api.history()[-1]["id"]
    api.chat("二")
    body = api.get("/api/history", params={"after": newest}).json()
    assert [m["content"] for m in body["messages"]] == ["二", "收到：二"]
    assert body["has_more"] is False
    assert api.get("/api/history", params={"after": 1, "before": 3}).status_code == 400


def test_a_failed_turn_names_its_stored_message_and_retry_of_reuses_it(api, upstream):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    failed = api.chat("只存一次")
    assert failed.status_code == 502
    stored = failed.json()["user_message"]
    assert stored["role"] == "user" and stored["content"] == "只存一次"

    retried = api.post("/api/chat", json={"message": "只存一次", "retry_of": stored["id"]})
    assert retried.status_code == 200 and retried.json()["message"]["reply_to"] == stored["id"]
    # The question once; then the record of the failure; then the reply the retry got.
    assert [(m["content"], m.get("incomplete")) for m in api.history()] == [
        ("只存一次", None),
        ("", True),
        ("收到：只存一次", None),
    ]
    # Once answered, the same retry_of stores the text as a new turn rather than answering twice.
    again = api.post("/api/chat", json={"message": "只存一次", "retry_of": stored["id"]})
    assert again.json()["message"]["reply_to"] != stored["id"]
    assert [m["role"] for m in api.history()] == ["user", "assistant", "assistant", "user", "assistant"]


@pytest.mark.parametrize("retry_of", ["1", 0, -3, 1.5, True])
def test_retry_of_must_be_a_message_id(api, retry_of):
    response = api.post("/api/chat", json={"message": "你好", "retry_of": retry_of})
    assert response.status_code == 400 and response.json()["code"] == "invalid_retry_of"


def test_retry_of_another_text_stores_the_new_text(api, upstream):
    upstream.script(
        {"kind": "status", "status": 500}, {"kind": "status", "status": 500}, {"kind": "status", "status": 500}
    )
    stored = api.chat("第一句").json()["user_message"]
    api.post("/api/chat", json={"message": "另一句", "retry_of": stored["id"]})
    assert [m["content"] for m in api.history() if m["role"] == "user"] == ["第一句", "另一句"]


# ---- inputs that must never be a 500 ------------------------------------------------------------


def test_json_nested_too_deep_to_parse_is_a_400_on_every_json_route_with_no_traceback(upstream, tmp_path):
    env = app_env(upstream, tmp_path / "data", ACCESS_TOKEN=TOKEN, DOTENV_PATH="/nonexistent")
    deep = {"data": "[" * 30000, "headers": {"Content-Type": "application/json"}}
    with Gunicorn(env, ["-c", "gunicorn.conf.py", "-w", "1"], tmp_path / "gunicorn.log") as server:
        with requests.Session() as session:
            answers = [session.post(server.base_url + "/api/login", timeout=30, **deep)]  # no token needed here
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            for path in ("/api/chat", "/api/chat/stream"):
                answers.append(session.post(server.base_url + path, timeout=30, **deep))
            # Deep inside an object is no better.
            inside = '{"message": "你好", "extra": ' + "[" * 30000 + "}"
            answers.append(
                session.post(
                    server.base_url + "/api/chat", data=inside, headers={"Content-Type": "application/json"}, timeout=30
                )
            )
        for response in answers:
            assert response.status_code == 400, response.text
            assert response.json()["code"] == "invalid_json"
            assert "JSON object" in response.json()["error"]
        assert upstream.requests == []
    log = server.log_text()
    assert " 400 " in log  # the log did record the requests
    assert "Traceback" not in log and "RecursionError" not in log and " ERROR " not in log


def test_a_lone_surrogate_from_the_client_is_a_400_wherever_it_is_sent(serve, upstream):
    api = serve(ACCESS_TOKEN=TOKEN)
    as_json = {"Content-Type": "application/json"}
    login = api.post("/api/login", data='{"token": "\\udfff"}', headers=as_json)
    assert login.status_code in (400, 401) and login.json()["success"] is False
    api.session.headers["Authorization"] = f"Bearer {TOKEN}"
    for path in ("/api/chat", "/api/chat/stream"):
        response = api.post(path, data='{"message": "坏\\ud800字"}', headers=as_json)
        assert response.status_code == 400 and response.json()["code"] == "invalid_message", response.text
    # In a query a surrogate can only come as its (invalid) UTF-8 bytes: here those of U+DFFF.
    assert api.get("/api/history?before=%ED%B3%BF").json()["code"] == "invalid_before"
    assert upstream.requests == [] and api.history() == []


def test_a_lone_surrogate_from_the_model_is_replaced_and_the_reply_kept(api, upstream):
    # The fake upstream sends them as the JSON escapes \ud83d and \udc00, as a provider's encoder would.
    upstream.script({"content": "半个\ud83d表情", "reasoning": "想\udc00想"})
    response = api.chat("发个表情")
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "半个\ufffd表情"
    stored = api.history()[-1]
    assert (stored["content"], stored["reasoning"]) == ("半个\ufffd表情", "想\ufffd想")
    # The history log stays strict UTF-8 JSON, line by line.
    log = (api.settings.data_dir / "conversations" / "main.jsonl").read_bytes().decode("utf-8")
    assert json.loads(log.splitlines()[-1])["content"] == "半个\ufffd表情"


def test_an_upstream_error_quoting_a_lone_surrogate_is_still_a_clear_error(api, upstream):
    upstream.script(*[{"kind": "status", "status": 400, "body": {"error": {"message": "bad \udc80 input"}}}] * 2)
    response = api.chat("你好")
    assert response.status_code == 502
    assert "bad \ufffd input" in response.json()["error"]


# ---- failed turns are part of the history -------------------------------------------------------


def test_a_failed_turn_is_stored_with_its_error_so_a_reload_can_show_it(api, upstream):
    upstream.script({"kind": "status", "status": 404, "body": {"error": {"message": "Model does not exist"}}})
    failed = api.chat("没人回答的问题")
    assert failed.status_code == 502
    question, record = api.history()
    assert question == failed.json()["user_message"]
    assert record["role"] == "assistant" and record["content"] == ""
    assert record["reply_to"] == question["id"]
    assert record["incomplete"] is True
    assert record["error"] == failed.json()["error"] and "Model does not exist" in record["error"]
    assert record["error_code"] == failed.json()["code"] == "upstream_error"


def test_the_record_of_a_failed_turn_never_reaches_the_model(api, upstream):
    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    assert api.chat("第一问").status_code == 502
    assert api.chat("第二问").status_code == 200
    assert upstream.requests[-1]["messages"][1:] == [{"role": "user", "content": "第二问"}]

    upstream.script({"kind": "status", "status": 401, "body": {"error": {"message": "Invalid token"}}})
    question = api.chat("第三问").json()["user_message"]
    retried = api.post("/api/chat", json={"message": "第三问", "retry_of": question["id"]})
    assert retried.status_code == 200
    assert api.chat("第四问").status_code == 200
    assert [(m["role"], m["content"]) for m in upstream.requests[-1]["messages"][1:]] == [
        ("user", "第二问"),
        ("assistant", "收到：第二问"),
        ("user", "第三问"),
        ("assistant", "收到：第三问"),
        ("user", "第四问"),
    ]
