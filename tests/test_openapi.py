"""GET /api/openapi.json describes every route, and the API behaves as it says under fuzzing (Schemathesis)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext, not_a_server_error, positive_data_acceptance

from app import create_app
from config import load_settings
from openapi import document
from tests.support.client import Api, app_env
from tests.support.servers import serve_in_thread


def undocumented_routes(app: Flask) -> set[tuple[str, str]]:
    """Routes the app serves (outside /static) that its document leaves out."""
    paths = document(app)["paths"]
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())  # Flask's <id> is OpenAPI's {id}
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    return {(path, method) for path, method in served if method not in paths.get(path, {})}


def documented_document() -> tuple[dict, set]:
    """The document of an app with default settings, and the routes it leaves out (built in a throwaway folder)."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            load_settings(
                {
                    "API_KEY": "sk-doc",
                    "SCHEDULER_ENABLED": "false",
                    "CHAT_HISTORY_FILE": str(Path(folder) / "chat_history.json"),
                }
            )
        )
        return document(app), undocumented_routes(app)


DOCUMENT, UNDOCUMENTED = documented_document()
# Bad input must be refused with a 4xx the document names: an over-long message is 413, a non-JSON body 415.
REFUSALS = [400, 401, 404, 405, 413, 415, 429]
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}),
)


def test_every_route_is_documented_and_served(api):
    document = api.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/api/chat",
        "/api/chat/stream",
        "/api/history",
        "/api/health",
        "/api/schedule",
        "/api/schedule/run",
        "/api/openapi.json",
    }
    assert set(document["paths"]["/api/history"]) == {"get", "delete"}
    assert set() == UNDOCUMENTED
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"], f"{method.upper()} {path} has no docstring"


def test_the_document_declares_each_error_status(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    assert {"400", "413", "415", "429", "502", "503", "504"} <= set(paths["/api/chat"]["post"]["responses"])
    assert {"400", "413", "429", "502", "503", "504"} <= set(paths["/api/chat/stream"]["post"]["responses"])
    assert [p["name"] for p in paths["/api/history"]["get"]["parameters"]] == [
        "limit",
        "before",
        "after",
        "conversation_id",
    ]


def test_validation_failures_are_documented_as_this_apis_error_not_the_librarys(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], f"{method.upper()} {path}"
            if "400" in operation["responses"]:
                schema = operation["responses"]["400"]["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, f"{method.upper()} {path}"
    assert "400" not in paths["/api/health"]["get"]["responses"]  # it validates nothing, so it cannot answer 400
    message = api.get("/api/openapi.json").json()["components"]["schemas"]["ChatRequest"]["properties"]["message"]
    assert message["maxLength"] == api.settings.max_message_chars


def sends_a_value(value: object) -> bool:
    """Whether a query parameter reaches the app as given: the app reads the first value, and empty means absent."""
    if isinstance(value, list):
        value = value[0] if value else ""
    return value not in ("", None)


@schemathesis.check
def no_internal_error(ctx: CheckContext, response, case) -> None:
    """A 500 is always a bug; 502/503/504 are fine when the document declares them (conformance checks that)."""
    if response.status_code == 500 or response.status_code > 504:
        raise AssertionError(f"{case.method} {case.path} answered {response.status_code}: {response.text[:300]}")


@schema.parametrize()
@settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document_under_fuzzing(case, fuzz_target):
    excluded = [not_a_server_error]
    # OpenAPI cannot say "before or after, not both"; the document says it in words, the API answers 400.
    given = {name for name, value in (case.query or {}).items() if sends_a_value(value)}
    both = case.path == "/api/history" and {"before", "after"} <= given
    # Nor can it say "a time in the future", "a cron that parses" or "a zone that exists" (nor "at or cron, not
    # both"): a schema-valid reminder may still be refused with a 400 the document lists.
    writes_a_reminder = case.path.startswith("/api/reminders") and case.method in ("POST", "PATCH")
    writes_a_reminder |= case.path == "/api/schedule/preview"  # it checks a schedule as a create does
    # Nor "a URL Apprise can send to": a schema-valid channel may be refused with a 400 the document lists.
    writes_a_reminder |= case.path.startswith("/api/channels") and case.method in ("POST", "PATCH")
    # Nor "a key that is a point on the P-256 curve": a push subscription is checked beyond its schema too.
    writes_a_reminder |= case.path == "/api/push/subscriptions" and case.method == "POST"
    # Nor "a conversations.json": an import is read far beyond what a schema can say.
    writes_a_reminder |= case.path == "/api/import"
    if both or writes_a_reminder:
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(
        base_url=fuzz_target.base_url, excluded_checks=excluded, additional_checks=[no_internal_error], timeout=10
    )
    if both and response.request.method == "GET":
        assert response.status_code == 400 and response.json()["code"] in (
            "invalid_query",
            "invalid_before",
            "invalid_after",
            "invalid_limit",
            "invalid_conversation_id",
        )


@pytest.fixture(scope="module")
def fuzz_target(fake_upstream_server, tmp_path_factory):
    """One app for the whole fuzz, on a loopback port, talking to the fake upstream."""

    app_settings = load_settings(app_env(fake_upstream_server, tmp_path_factory.mktemp("fuzz") / "data"))
    with serve_in_thread(create_app(app_settings)) as base_url:
        yield Api(base_url, app_settings)
