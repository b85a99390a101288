"""Gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app`.

Chat requests wait seconds to minutes on the model, so each worker is a gthread worker with many
threads: a slow reply occupies one thread, never the whole worker. Workers can be any number;
reminders still fire once (see scheduler.py).
"""

import os

from app import load_settings_or_exit

_settings = load_settings_or_exit()  # also fails fast, with one line, on a bad .env

bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
# The worker heartbeat timeout; gthread keeps beating while threads wait on the model.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
# Query strings are part of the access log line; the app takes no secret in a URL.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# Gunicorn 25+ opens a control socket in $HOME; this app needs none, and two instances would clash.
control_socket_disable = True
