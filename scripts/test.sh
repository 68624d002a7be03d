#!/usr/bin/env bash
# Install everything the tests need (Debian's chromium for the browser tests and ffmpeg
# for the voice tests, the Python packages into .venv), check the code with ruff and mypy,
# and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
# Playwright's own browser download cannot work here; the tests use Debian's chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-noto-cjk)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check -q .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
