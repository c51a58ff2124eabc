#!/usr/bin/env bash
# The test suite, as CI runs it: the import contracts (pyproject.toml), ruff, then pytest with
# any arguments given (e.g. -m "not slow" for the fast subset). pytest's exit code is kept
# (5 = nothing collected).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lint-imports
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -q "$@"
