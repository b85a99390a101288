#!/usr/bin/env bash
# Production start: Gunicorn with gunicorn.conf.py. Run scripts/run.sh once first (it makes .venv and .env).
# Listens on HOST from .env, 127.0.0.1 by default: nginx in front faces the network (NETWORK_SETUP.md).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/gunicorn ]; then
  echo "No virtualenv with Gunicorn in .venv. Create it with:" >&2
  echo "  python3 -m venv .venv && .venv/bin/pip install -r requirements.txt" >&2
  echo "(Python 3.11 or newer; on Debian/Ubuntu first: sudo apt install python3-venv)" >&2
  exit 1
fi
if [ ! -f .env ]; then
  echo "No .env file. Copy the example and set API_KEY:" >&2
  echo "  cp .env.example .env && \$EDITOR .env" >&2
  exit 1
fi
mkdir -p data
exec .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app
