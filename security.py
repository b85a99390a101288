"""Access control, rate limits and response headers for putting the app on the internet."""

from __future__ import annotations

from flask import Flask

from config import Settings


def init_security(app: Flask, settings: Settings) -> None:
    """Attach authentication, rate limiting and security headers to `app`."""
