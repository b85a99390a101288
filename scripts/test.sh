#!/usr/bin/env bash
# Run every test from a fresh clone: installs what the tests drive (Debian's Chromium, nginx, Node.js,
# redis-server, a CJK font, and systemd-analyze for the unit file check), creates .venv, installs requirements-dev.txt, checks
# style and formatting with ruff, runs the page's unit tests with node --test, then runs pytest.
# Extra arguments go to one pytest run, e.g. `bash scripts/test.sh -k stream`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The page is zh-CN first: without a CJK font its screenshots show empty boxes.
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || missing+=(fonts-noto-cjk)
if ((${#missing[@]})); then
  echo "Installing ${missing[*]} with apt-get (needs root) ..."
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# As in run.sh: a half-made venv (python missing or broken, or no pip) is rebuilt.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/ruff format --check .
node --test tests/js/*.test.mjs

# With arguments (e.g. `-k stream`, a file): one pytest run, as asked.
if (($#)); then
  exec .venv/bin/python -m pytest "$@"
fi

# The full run. The reminder tests spend most of their minute waiting for cron ticks under real
# Gunicorn, using little CPU, so they run beside the rest; their output follows, then one total.
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
.venv/bin/python -m pytest tests/test_scheduler.py --basetemp="$results/scheduler-tmp" \
  --junitxml="$results/scheduler.xml" >"$results/scheduler.log" 2>&1 &
scheduler=$!
# A background job ignores Ctrl-C: pass an interrupt on to it, so nothing keeps running after this script.
trap 'kill -TERM "$scheduler" 2>/dev/null; wait "$scheduler" 2>/dev/null; exit 130' INT TERM
status=0
.venv/bin/python -m pytest --ignore=tests/test_scheduler.py --junitxml="$results/rest.xml" || status=$?
wait "$scheduler" || status=$?
echo "---- tests/test_scheduler.py (ran beside the rest) ----"
cat "$results/scheduler.log"
.venv/bin/python scripts/test_total.py "$results/rest.xml" "$results/scheduler.xml" || status=1
exit "$status"
