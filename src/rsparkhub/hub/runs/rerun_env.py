"""Which environment a run had, read from its environment snapshot, for a re-run's report.

A re-run's session gets the environment its workspace's declaration gives — the recorded
``requirements.txt``/``DESCRIPTION`` come along with the recorded files, so the same
declaration gives the same key — but **not** the original workspace's overlay (what
``pip install``/``install.packages`` put there while exploring): the re-run workspace is a
new one, with an empty overlay. This module says which key each side had and which
packages came from the original's overlay, so the report can name them as the cause of a
package version difference.

The snapshot (``agent/environment.py``) records each package's library directory; a
declared environment is ``…/environments/<python|r>/<key>/{site,library}`` and an overlay
``…/overlays/<workspace id>/{python,r}`` (hub/environments/; the same paths inside a
Kubernetes session pod). Reading only; a snapshot without libraries (an older record)
gives what its search paths say.
"""

from __future__ import annotations

import re
from typing import Any

_ENV_DIR = re.compile(r"/environments/(python|r)/([0-9a-f]{16,64})/(?:site|library)/?$")
_OVERLAY_DIR = re.compile(r"/overlays/[A-Za-z0-9_-]+/(?:python|r)/?$")
LABEL = {"python": "Python", "r": "R"}


def environment_of(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    """``{"keys": {"python": key, "r": key}, "overlay": {"python": {name: version}, …}}``:
    the declared environment's key per language (absent: none) and the packages the
    kernels took from the workspace's overlay."""
    keys: dict[str, str] = {}
    overlay: dict[str, dict[str, str]] = {}
    for lang, info in ((snapshot or {}).get("languages") or {}).items():
        if not isinstance(info, dict):
            continue
        dirs = [str(d) for d in (info.get("paths") or info.get("libraries") or [])]
        for d in dirs:
            m = _ENV_DIR.search(d)
            if m and m.group(1) == lang:
                keys.setdefault(lang, m.group(2))
        for p in info.get("packages") or []:
            if isinstance(p, dict) and _OVERLAY_DIR.search(str(p.get("library") or "")):
                overlay.setdefault(lang, {})[str(p.get("name"))] = str(p.get("version"))
    return {"keys": keys, "overlay": overlay}


def explain(
    report: dict[str, Any], original: dict[str, Any] | None, rerun: dict[str, Any] | None
) -> dict[str, Any]:
    """Add ``environment`` (both sides' keys and the original's overlay packages) to a
    re-run report, a note on the keys, and to each package difference of a package the
    original took from its overlay, why it differs."""
    before, after = environment_of(original), environment_of(rerun)
    report["environment"] = {"original": before, "rerun": after}
    notes: list[str] = report.setdefault("notes", [])
    for lang in sorted(set(before["keys"]) | set(after["keys"])):
        a, b = before["keys"].get(lang), after["keys"].get(lang)
        label = LABEL.get(lang, lang)
        if a == b:
            notes.append(f"the same declared {label} environment ({str(a)[:12]}) on both sides")
        else:
            notes.append(
                f"the original's declared {label} environment was {_short(a)}, the re-run's "
                f"{_short(b)}"
            )
    for lang, pkgs in sorted(before["overlay"].items()):
        label = LABEL.get(lang, lang)
        names = ", ".join(f"{n} {v}" for n, v in sorted(pkgs.items(), key=lambda x: x[0].lower()))
        notes.append(
            f"the original took {label} package(s) {names} from its workspace's overlay "
            "(installed in a session), which a re-run does not carry: declare them "
            "(requirements.txt / DESCRIPTION) to have them re-run"
        )
        for d in report.get("differences") or []:
            if d.get("kind") != "environment":
                continue
            for name in pkgs:
                if str(d.get("cause", "")).startswith(f"{label} package {name} "):
                    d["cause"] = (
                        f"{d['cause']} (the original's {name} was installed in its workspace's "
                        "overlay, which a re-run does not carry)"
                    )
    return report


def _short(key: str | None) -> str:
    return key[:12] if key else "none (the base packages)"
