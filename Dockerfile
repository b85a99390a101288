# Chat assistant: Flask app served by Gunicorn (gunicorn.conf.py), listening on port 1342.
# Build: docker build -t chat-assistant .   Run: docker compose up -d (see docker-compose.yml)
FROM python:3.11-slim-bookworm

# HOST=0.0.0.0: inside its own network namespace the app must accept the published port's connections
# (the app's default, 127.0.0.1, is for hosts); docker-compose.yml publishes it on the host's loopback only.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=1342

WORKDIR /app

# A fixed, unprivileged user: `chown -R 10001:10001 data` on the host so it can use a bind-mounted ./data.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# Dependencies first, in their own layer: editing the code does not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The code stays owned by root, so the app cannot rewrite itself; only /app/data is writable.
COPY . .
RUN mkdir -p /app/data && chown app:app /app/data

# History, archives, the reminder lock and state live here. Mount a folder (or a named volume)
# on /app/data, never a single file on /app/data/chat_history.json: the app saves by writing a
# temporary file beside it and renaming it over the old one, which fails on a file bind mount.
VOLUME ["/app/data"]

USER 10001:10001
EXPOSE 1342

# No curl in the slim image: Python asks /api/health, which needs no token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('PORT', '1342'), timeout=4)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
