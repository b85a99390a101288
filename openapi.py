"""The OpenAPI 3.1 document served at GET /api/openapi.json.

flask-openapi3 builds it from what each route declares (its request model, its answers, its
docstring; see schemas.py and api.py). Here it gets what only the running server knows: its limits
(MAX_MESSAGE_CHARS, HISTORY_PAGE_SIZE, MAX_BODY_BYTES) and a few fixes of the library's output.
`tests/test_openapi.py` checks that every route is described and fuzzes the API against the document.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Flask

from config import Settings

DESCRIPTION = (
    "Chat with an OpenAI-compatible model; the conversation is stored on the server. Every error is "
    '`{"success": false, "error": "<sentence>", "code": "<code>"}`; an unknown /api route answers 404 '
    "`not_found` and a wrong method 405 `method_not_allowed`. With ACCESS_TOKEN set, every route "
    "except /api/health, /api/login and /api/logout needs the Bearer token or the login cookie."
)
SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer", "description": "ACCESS_TOKEN, when the server sets one."},
    "loginCookie": {"type": "apiKey", "in": "cookie", "name": "chat_session", "description": "Set by POST /api/login."},
}


def operation_id(*, name: str, method: str, **_: str) -> str:
    """Each operation's id: the method and the view's name, e.g. `post_chat`."""
    return f"{method.lower()}_{name}"


def document(app: Flask) -> dict[str, Any]:
    """The document for `app`, built on first use."""
    if "openapi" not in app.extensions:
        app.extensions["openapi"] = _finish(copy.deepcopy(app.api_doc), app.extensions["settings"])  # type: ignore[attr-defined]
    return app.extensions["openapi"]


def _finish(doc: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Add this server's limits; drop the validation answer the library adds to routes that validate nothing."""
    doc["info"] = {"title": "Chat assistant API", "version": "1", "description": DESCRIPTION}
    doc["servers"] = [{"url": "/"}]
    doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schemas = doc["components"]["schemas"]
    message = schemas["ChatRequest"]["properties"]["message"]
    message["maxLength"] = settings.max_message_chars
    message["description"] += f" This server: {settings.max_message_chars}."
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            # Multi-line docstrings arrive joined with <br/>: make them one paragraph.
            if "description" in operation:
                operation["description"] = " ".join(operation["description"].replace("<br/>", " ").split())
            responses = operation["responses"]
            added = responses.get("400", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if added.get("type") == "array":
                del responses["400"]
            if "413" in responses:  # the document is this app's own copy: edit it in place
                too_large = responses["413"]
                too_large["description"] = too_large["description"].replace(
                    "MAX_BODY_BYTES", f"MAX_BODY_BYTES ({settings.max_body_bytes} bytes)"
                )
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "limit":
                    parameter["description"] = parameter["schema"]["description"].replace(
                        "HISTORY_PAGE_SIZE", f"HISTORY_PAGE_SIZE, {settings.history_page_size}"
                    )
    return doc
