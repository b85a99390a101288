"""The baseline for throughput: bare Flask under the same Gunicorn config, doing nothing but answer.

`/bare` answers a body like /api/health's; `/bare/page` answers a fixed 50-message page, the same bytes
as /api/history's default page, so the comparison separates the app's own work from JSON encoding.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent))

from history_files import fake_message  # noqa: E402

app = Flask(__name__)
app.json.ensure_ascii = False  # type: ignore[attr-defined]
app.json.sort_keys = False  # type: ignore[attr-defined]
PAGE = [fake_message(number, datetime(2025, 1, 1, tzinfo=UTC)) for number in range(951, 1001)]


@app.get("/api/health")
def health() -> dict:
    """Same shape as the app's health answer, computed from nothing (also what the start-up probe polls)."""
    return {"status": "ok", "scheduler_running": True, "scheduler_enabled": True, "chat_configured": True}


@app.get("/bare/page")
def page() -> dict:
    """A fixed page of 50 messages, like GET /api/history's default page."""
    return {"success": True, "messages": PAGE, "has_more": True}
