#!/usr/bin/env bash
# Run the app from a fresh clone: creates .venv, installs requirements.txt, creates .env from
# .env.example when it is missing, then serves on http://localhost:1342 (PORT in .env changes it).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
if [ ! -f .env ]; then
  cp .env.example .env
  echo "Created .env from .env.example: set API_KEY in it to enable chat."
fi
mkdir -p data
exec .venv/bin/python app.py
