#!/usr/bin/env bash
# Run the app from a fresh clone: creates .venv, installs requirements.txt, creates .env from
# .env.example when it is missing, then serves on http://localhost:1342 (PORT in .env changes it).
# It listens on 127.0.0.1 only (HOST in .env): put nginx in front before others use it (NETWORK_SETUP.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# A venv left half-made (python missing or broken, or no pip, as after `python3 -m venv` failed for want
# of python3-venv) is rebuilt; an interrupted install is completed by pip, which installs what is missing.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "Python 3.11 or newer is needed; python3 is $(python3 --version 2>&1)." >&2
    exit 1
  }
  rm -rf .venv
  python3 -m venv .venv || {
    echo "Could not create .venv: on Debian/Ubuntu install python3-venv (sudo apt install python3-venv)." >&2
    exit 1
  }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
if [ ! -f .env ]; then
  # .env holds API_KEY and ACCESS_TOKEN: readable by its owner only, from the moment it exists.
  install -m 600 .env.example .env
  echo "Created .env from .env.example: set API_KEY in it to enable chat."
fi
mkdir -p data
exec .venv/bin/python app.py
