#!/usr/bin/env bash
# Install into .venv and start the service on its embedded default (demo config, SQLite
# file under data/, simulator at http://127.0.0.1:8000/simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python run.py "$@"
