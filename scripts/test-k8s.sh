#!/usr/bin/env bash
# The real-cluster suite end to end, on this machine (root, Debian 12):
#
#   scripts/test-k8s.sh [pytest args]
#
# brings up the lab cluster (scripts/k8s-lab.sh up), builds and loads the session images,
# the hub's, PostgreSQL's and Spark's (scripts/k8s-lab.sh images session-python
# session-r-debian hub postgres-debian spark-debian; cached, see docs/kubernetes.md), runs
# tests/test_k8s_cluster.py against it with the variables of `scripts/k8s-lab.sh env` set,
# and takes the lab down again, whatever the tests said. RSPARKHUB_K8S_KEEP=1 leaves the lab up (then
# `scripts/k8s-lab.sh down`). The exit status is pytest's.
set -euo pipefail

REPO_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
LAB_SH=scripts/k8s-lab.sh
scripts/install.sh  # idempotent: the venv, and the pinned kustomize the tests render with

t0=$(date +%s)
phase() { echo "[test-k8s] $1 after $(($(date +%s) - t0)) s" >&2; }
if [ "${RSPARKHUB_K8S_KEEP:-0}" != 1 ]; then
	trap '"$LAB_SH" down; phase "lab down"' EXIT
fi
"$LAB_SH" up
phase "lab up"
"$LAB_SH" images session-python session-r-debian hub postgres-debian spark-debian
phase "images ready"
eval "$("$LAB_SH" env)"
status=0
.venv/bin/python -m pytest -q -rA -p no:cacheprovider tests/test_k8s_cluster.py "$@" || status=$?
phase "tests done (pytest exit $status)"
exit "$status"
