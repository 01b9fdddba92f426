#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the project and its test tools, at the exact
# versions CI tests (constraints.txt; pyproject.toml only states the accepted ranges).
# Works offline except for the package registry. Then: `source .venv/bin/activate && dvc repro`.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.version_info[:2] >= (3, 11) or sys.exit(f"Python 3.11 or newer is required (CI tests 3.11), found {sys.version.split()[0]}")'
[ -d .venv ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
# Nothing phones home: no DVC analytics, no hub telemetry.
.venv/bin/dvc config --local core.analytics false >/dev/null 2>&1 || true
echo "set-up done: source .venv/bin/activate"
