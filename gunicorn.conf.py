"""Gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app`.

Chat requests wait seconds to minutes on the model, so each worker is a gthread worker with many
threads: a slow reply occupies one thread, never the whole worker. Workers can be any number;
reminders still fire once (see scheduler.py). Every value comes from the validated settings.
"""

from app import load_settings_or_exit

_settings = load_settings_or_exit()  # also fails fast, with one line, on a bad .env

bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
workers = _settings.web_concurrency
threads = _settings.gunicorn_threads
# The worker heartbeat timeout; gthread keeps beating while threads wait on the model.
timeout = _settings.gunicorn_timeout
graceful_timeout = _settings.gunicorn_graceful_timeout
keepalive = 5
max_requests = _settings.gunicorn_max_requests  # 0: never recycle; reminders survive recycling anyway
max_requests_jitter = max_requests // 10
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
# Query strings are part of the access log line; the app takes no secret in a URL.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# Gunicorn 25+ opens a control socket in $HOME; this app needs none, and two instances would clash.
control_socket_disable = True
