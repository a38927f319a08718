"""Host bind mounts a root hub makes for its sandboxes (views of directories a sandbox's
uid cannot reach by path; per-user Spark file views), and the one way to ask whether
something is mounted somewhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def is_mount(path: Path) -> bool:
    """Whether ``path`` is a mount point (``os.path.ismount`` misses bind mounts within one
    file system, so ask the kernel's mount table)."""
    want = str(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                point = line.split(" ", 5)[4]
                if point == want or _unescape(point) == want:
                    return True
    except OSError:
        return False
    return False


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def umount(path: Path) -> None:
    """Every mount stacked on ``path`` (bounded: a failing umount is not retried forever)."""
    for _ in range(8):
        if not is_mount(path):
            return
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)
