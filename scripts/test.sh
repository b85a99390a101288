#!/usr/bin/env bash
# Run every test from a fresh clone: installs what the tests drive (Debian's Chromium, nginx, Node.js,
# and systemd-analyze for the unit file check), creates .venv, installs requirements-dev.txt, checks
# style and formatting with ruff, runs the page's unit tests with node --test, then runs pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k stream`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if ((${#missing[@]})); then
  echo "Installing ${missing[*]} with apt-get (needs root) ..."
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/ruff format --check .
node --test tests/js/*.test.mjs
exec .venv/bin/python -m pytest "$@"
