#!/usr/bin/env bash
# Install what is missing, then serve the hub on http://127.0.0.1:8000/.
# Extra arguments go to `rsparkhub serve`.
set -euo pipefail

REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

scripts/install.sh
exec .venv/bin/rsparkhub serve --host 127.0.0.1 --port 8000 "$@"
