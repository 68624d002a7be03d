#!/usr/bin/env bash
# Install (ffmpeg with apt-get when missing, Python packages into .venv) and start the
# service on its embedded default (demo config, SQLite file under data/, simulator at
# http://127.0.0.1:8000/simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null 2>&1; then
  # Voice messages are converted with ffmpeg before recognition ([voice] in config.toml).
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python run.py "$@"
