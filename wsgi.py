"""Production entry point: `gunicorn -c gunicorn.conf.py wsgi:app` (or the spec's plain gunicorn line).

Each worker imports this module, builds the app and joins the reminder election; the scheduler's
file lock makes exactly one of them run the reminders (see scheduler.py), whatever `-w` is.
"""

from app import create_app, load_settings_or_exit

app = create_app(load_settings_or_exit())
app.extensions["reminders"].start()
