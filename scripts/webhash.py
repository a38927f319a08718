#!/usr/bin/env python3
"""The content hash of the web client's sources (web/), stamped into the build as
src/rsparkhub/web/dist/.source-hash. scripts/install.sh rebuilds when it differs; a test
checks that the committed build is fresh. Stdlib only.

    python3 scripts/webhash.py            # print the hash of web/'s sources
    python3 scripts/webhash.py --check    # exit 1 if dist/.source-hash differs
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
STAMP = ROOT / "src" / "rsparkhub" / "web" / "dist" / ".source-hash"
FILES = ("package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json")


TEST_HELPERS = WEB / "src" / "testing"  # helpers for tests only: the build never reads them


def sources() -> list[Path]:
    """What the build reads: the config files and web/src (tests and their helpers excluded)."""
    out = [WEB / name for name in FILES if (WEB / name).is_file()]
    for p in sorted((WEB / "src").rglob("*")):
        if (
            p.is_file()
            and ".test." not in p.name
            and "/dev/" not in p.as_posix()
            and not p.is_relative_to(TEST_HELPERS)
        ):
            out.append(p)
    return out


def source_hash() -> str:
    h = hashlib.sha256()
    for p in sources():
        h.update(p.relative_to(WEB).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def main(argv: list[str]) -> int:
    digest = source_hash()
    if "--check" in argv:
        have = STAMP.read_text().strip() if STAMP.is_file() else ""
        if have != digest:
            print(f"web build is stale: {have or 'no stamp'} != {digest}", file=sys.stderr)
            return 1
        return 0
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
