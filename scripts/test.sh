#!/usr/bin/env bash
# Install what is missing (fast when nothing is), then run the test suite from the repo root.
# Extra arguments go to pytest; the exit status is pytest's.
set -euo pipefail

REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"
