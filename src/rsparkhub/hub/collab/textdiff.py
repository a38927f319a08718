"""The smallest edits that turn one text into another (lines first, then characters inside
each changed run), as (start, end, insert) in code points of the old text, ascending. Used
to bring a file changed outside the editor into its shared document as a few insertions
and deletions, so the CRDT merges them with the edits being made (room.py)."""

from __future__ import annotations

from difflib import SequenceMatcher

Edit = tuple[int, int, str]


def text_edits(old: str, new: str) -> list[Edit]:
    if old == new:
        return []
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    offsets = [0]
    for line in a:
        offsets.append(offsets[-1] + len(line))
    out: list[Edit] = []
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start, end, insert = offsets[i1], offsets[i2], "".join(b[j1:j2])
        out.append(_trimmed(old, start, end, insert))
    return out


def _trimmed(old: str, start: int, end: int, insert: str) -> Edit:
    """One changed run without the characters it shares at both ends."""
    removed = old[start:end]
    p = 0
    while p < len(removed) and p < len(insert) and removed[p] == insert[p]:
        p += 1
    s = 0
    while s < len(removed) - p and s < len(insert) - p and removed[-1 - s] == insert[-1 - s]:
        s += 1
    return start + p, end - s, insert[p : len(insert) - s]


def apply_edits(text: str, edits: list[Edit]) -> str:
    for start, end, insert in reversed(edits):
        text = text[:start] + insert + text[end:]
    return text
