"""Compare two runs' outputs and say why they differ (re-runs and exported bundles).

Standard library only, no other rsparkhub module: the hub uses it for ``rerun`` and a copy
ships inside every export bundle, where ``rerun.py`` runs it with a plain ``python3``.

What is compared (``compare``), each difference with its cause:

* inputs — every input file's sha256 (``input file data.csv changed``);
* status — ok / error of the run;
* the console transcript — a line diff (``difflib``) after masking what legitimately
  changes between runs: the regular expressions of ``Settings.ignore`` (by default dates
  and times, hex addresses such as ``0x7f3a…``, durations such as ``1.23 s`` and R's
  ``elapsed`` timings). The patterns are the setting ``ignore``: the hub's
  ``POST …/rerun`` body and ``rsparkhub rerun --ignore`` add to them, a bundle's
  ``runs.json`` carries them;
* plots, in order — PNG by pixels (a small decoder for the non-interlaced 8-bit images R
  and matplotlib write): a plot differs when more than ``plot_threshold`` of its pixels
  differ by more than ``pixel_tolerance`` in a channel; SVG by text with whitespace and
  generated ids normalised; anything else by sha256;
* files the run wrote — sha256, then for CSV a data diff (rows added / removed, cells
  changed, a few examples) and for text a line diff with the ignore patterns;
* the environment — R/Python versions, packages whose version changed, appeared or
  vanished, the OS. Reported, never a reason for "not reproduced" on its own (an
  environment difference explains an output difference; it is not one).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import re
import struct
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEFAULT_IGNORE = [
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?",  # ISO stamps
    r"\d{4}-\d{2}-\d{2}",  # dates
    r"\b\d{1,2}:\d{2}:\d{2}(\.\d+)?\b",  # times
    r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" +\d+ [\d:]+( [A-Z]{3,4})? \d{4}",  # date() / Sys.time() / time.ctime()
    r"0x[0-9a-fA-F]{4,}",  # addresses: <environment: 0x55d…>, <object at 0x7f…>
    r"\b\d+(\.\d+)?\s?(s|ms|µs|us|ns|sec|secs|seconds|mins?|minutes)\b",  # durations
    r"(?m)^.*\belapsed\b.*\n.*$",  # print(system.time(…)): the header and its numbers
]
MASK = "<…>"
EXAMPLES = 5  # examples of a difference kept in a report


@dataclass
class Settings:
    ignore: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE))
    plot_threshold: float = 0.001  # fraction of pixels that may differ
    pixel_tolerance: int = 8  # per channel, 0–255
    context: int = 1  # lines of context in a text diff


@dataclass
class Plot:
    mime: str
    data: bytes


@dataclass
class Outputs:
    """One run's side of a comparison. ``files`` maps a written path to its bytes (None: the
    run wrote it but the bytes are not available); ``inputs`` maps an input path to its
    sha256."""

    status: str | None = None
    transcript: str | None = None
    plots: list[Plot] = field(default_factory=list)
    files: dict[str, bytes | None] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] | None = None


@dataclass
class Difference:
    kind: str  # input | status | transcript | plot | file | environment
    subject: str
    cause: str
    details: list[str] = field(default_factory=list)
    blocking: bool = True  # False: reported, but the run still reproduced

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "cause": self.cause,
            "details": self.details,
            "blocking": self.blocking,
        }


@dataclass
class Report:
    differences: list[Difference] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)

    @property
    def reproduced(self) -> bool:
        return not any(d.blocking for d in self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reproduced": self.reproduced,
            "verdict": "reproduced" if self.reproduced else "not reproduced",
            "compared": self.compared,
            "differences": [d.to_dict() for d in self.differences],
        }

    def text(self) -> str:
        return report_text(self.to_dict())


def report_text(report: dict[str, Any]) -> str:
    """A report (``Report.to_dict``) as the lines a terminal shows."""
    compared = ", ".join(f"{n} {k}" for k, n in report.get("compared", {}).items())
    lines = [f"{report['verdict'].upper()}" + (f" (compared {compared})" if compared else "")]
    for d in report.get("differences", []):
        mark = "✗" if d.get("blocking", True) else "·"
        lines.append(f"  {mark} {d['cause']}")
        lines += [f"      {line}" for line in d.get("details", [])]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- text


def mask(text: str, patterns: list[str]) -> str:
    for p in patterns:
        text = re.sub(p, MASK, text)
    return text


def text_diff(a: str, b: str, patterns: list[str], context: int = 1) -> list[str]:
    """A unified line diff of ``a`` → ``b`` after masking ``patterns``; empty when equal."""
    la, lb = mask(a, patterns).splitlines(), mask(b, patterns).splitlines()
    if la == lb:
        return []
    return [
        line
        for line in difflib.unified_diff(la, lb, "expected", "actual", n=context, lineterm="")
        if not line.startswith(("---", "+++"))
    ]


def _short(lines: list[str], limit: int = 40) -> list[str]:
    return lines if len(lines) <= limit else [*lines[:limit], f"… {len(lines) - limit} more"]


# ---------------------------------------------------------------------------- PNG


class PNGError(ValueError):
    pass


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGBA bytes) of a non-interlaced 8-bit PNG (grey, RGB, palette,
    grey+alpha, RGBA). Raises ``PNGError`` for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PNGError("not a PNG")
    pos, idat, palette, trns = 8, [], b"", b""
    width = height = depth = ctype = interlace = -1
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IEND":
            break
    if depth != 8 or interlace != 0:
        raise PNGError(f"bit depth {depth}, interlace {interlace}: only 8-bit, non-interlaced")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if channels is None:
        raise PNGError(f"colour type {ctype}")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(ftype, line, prev, channels)
        rows.append(_rgba(bytes(line), ctype, palette, trns))
        prev = line
    return width, height, rows


def _unfilter(ftype: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    n = len(line)
    if ftype == 0:
        return
    if ftype == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif ftype == 2:
        for i in range(n):
            line[i] = (line[i] + prev[i]) & 0xFF
    elif ftype == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif ftype == 4:
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 0xFF
    else:
        raise PNGError(f"filter type {ftype}")


def _rgba(line: bytes, ctype: int, palette: bytes, trns: bytes) -> bytes:
    if ctype == 6:
        return line
    out = bytearray()
    if ctype == 2:
        for i in range(0, len(line), 3):
            out += line[i : i + 3] + b"\xff"
    elif ctype == 0:
        for g in line:
            out += bytes((g, g, g, 255))
    elif ctype == 4:
        for i in range(0, len(line), 2):
            g = line[i]
            out += bytes((g, g, g, line[i + 1]))
    else:  # palette
        for idx in line:
            alpha = trns[idx] if idx < len(trns) else 255
            out += palette[3 * idx : 3 * idx + 3] + bytes((alpha,))
    return bytes(out)


def png_difference(a: bytes, b: bytes, tolerance: int = 8) -> tuple[float, str]:
    """The fraction of pixels that differ by more than ``tolerance`` in any channel, and a
    note (sizes that differ count as every pixel differing)."""
    wa, ha, ra = decode_png(a)
    wb, hb, rb = decode_png(b)
    if (wa, ha) != (wb, hb):
        return 1.0, f"size {wa}×{ha} → {wb}×{hb}"
    differing = 0
    for row_a, row_b in zip(ra, rb, strict=True):
        if row_a == row_b:
            continue
        for x in range(0, len(row_a), 4):
            if row_a[x : x + 4] != row_b[x : x + 4] and any(
                abs(row_a[x + k] - row_b[x + k]) > tolerance for k in range(4)
            ):
                differing += 1
    return differing / max(1, wa * ha), f"{wa}×{ha}"


def normalise_svg(text: str) -> str:
    """SVG text without what a device varies between identical drawings: whitespace
    between tags, generated ids (cairo's ``glyph0-1``, matplotlib's random ``p3f2a…``) and
    metadata (matplotlib's creation date)."""
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r"<dc:date>.*?</dc:date>", "", text, flags=re.S)
    ids = {m: f"id{i}" for i, m in enumerate(dict.fromkeys(re.findall(r'id="([^"]+)"', text)))}
    for old, new in sorted(ids.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, text)
    return re.sub(r">\s+<", "><", text).strip()


# ---------------------------------------------------------------------------- CSV


def csv_diff(a: bytes, b: bytes) -> list[str]:
    """What changed between two CSV files, as sentences: header, rows added/removed, cells
    changed (by row and column, when both have the same rows), a few examples."""
    ra = list(csv.reader(io.StringIO(a.decode("utf-8", "replace"))))
    rb = list(csv.reader(io.StringIO(b.decode("utf-8", "replace"))))
    out: list[str] = []
    ha, hb = (ra[0] if ra else []), (rb[0] if rb else [])
    if ha != hb:
        out.append(f"columns {ha} → {hb}")
    body_a, body_b = ra[1:], rb[1:]
    if len(body_a) == len(body_b) and ha == hb:
        changed = [
            (r, c, va, vb)
            for r, (row_a, row_b) in enumerate(zip(body_a, body_b, strict=True), start=2)
            for c, (va, vb) in enumerate(zip(row_a, row_b, strict=False))
            if va != vb
        ]
        lens = sum(len(x) != len(y) for x, y in zip(body_a, body_b, strict=True))
        if changed:
            out.append(f"{len(changed)} cell(s) changed in {len(body_a)} rows")
            for r, c, va, vb in changed[:EXAMPLES]:
                col = ha[c] if c < len(ha) else str(c + 1)
                out.append(f"  line {r}, column {col}: {va!r} → {vb!r}")
        if lens:
            out.append(f"{lens} row(s) have a different number of fields")
        return out
    ca, cb = Counter(map(tuple, body_a)), Counter(map(tuple, body_b))
    removed, added = list((ca - cb).elements()), list((cb - ca).elements())
    out.append(f"rows {len(body_a)} → {len(body_b)}: {len(added)} added, {len(removed)} removed")
    out += [f"  - {','.join(r)}" for r in removed[:EXAMPLES]]
    out += [f"  + {','.join(r)}" for r in added[:EXAMPLES]]
    return out


# ---------------------------------------------------------------------------- environment


def _packages(env: dict[str, Any], lang: str) -> dict[str, str]:
    info = (env.get("languages") or {}).get(lang) or {}
    return {
        str(p.get("name")): str(p.get("version"))
        for p in info.get("packages") or []
        if isinstance(p, dict)
    }


def environment_diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Sentences for what differs between two environment snapshots (``runs_protocol``)."""
    if not a or not b:
        return [] if a == b else ["no environment snapshot on one side"]
    out: list[str] = []
    osa, osb = (a.get("os") or {}).get("name"), (b.get("os") or {}).get("name")
    if osa != osb:
        out.append(f"OS {osa} → {osb}")
    langs = sorted(set(a.get("languages") or {}) | set(b.get("languages") or {}))
    for lang in langs:
        la = (a.get("languages") or {}).get(lang) or {}
        lb = (b.get("languages") or {}).get(lang) or {}
        label = "R" if lang == "r" else lang.capitalize()
        if la.get("version") != lb.get("version"):
            out.append(f"{label} {la.get('version')} → {lb.get('version')}")
        pa, pb = _packages(a, lang), _packages(b, lang)
        for name in sorted(set(pa) | set(pb), key=str.lower):
            if name not in pb:
                out.append(f"{label} package {name} {pa[name]} vanished")
            elif name not in pa:
                out.append(f"{label} package {name} {pb[name]} appeared")
            elif pa[name] != pb[name]:
                out.append(f"{label} package {name} {pa[name]} → {pb[name]}")
    return out


# ---------------------------------------------------------------------------- compare


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def compare_file(path: str, a: bytes, b: bytes, s: Settings) -> Difference | None:
    if a == b:
        return None
    lower = path.lower()
    details: list[str] = []
    if lower.endswith(".png"):
        try:
            frac, note = png_difference(a, b, s.pixel_tolerance)
        except PNGError as exc:
            return Difference("file", path, f"file {path} differs (sha256; {exc})")
        if frac <= s.plot_threshold:
            return None
        return Difference("file", path, f"file {path} differs in {frac:.1%} of pixels ({note})")
    ta, tb = _decode(a), _decode(b)
    if ta is not None and tb is not None:
        if lower.endswith((".csv", ".tsv")):
            if mask(ta, s.ignore) == mask(tb, s.ignore):
                return None
            details = csv_diff(a, b)
        elif lower.endswith(".svg"):
            if normalise_svg(mask(ta, s.ignore)) == normalise_svg(mask(tb, s.ignore)):
                return None
            details = text_diff(normalise_svg(ta), normalise_svg(tb), s.ignore, s.context)
        else:
            details = text_diff(ta, tb, s.ignore, s.context)
            if not details:
                return None
    cause = f"file {path} differs (sha256 {sha256(a)[:12]} → {sha256(b)[:12]})"
    return Difference("file", path, cause, _short(details))


def compare_plot(i: int, a: Plot, b: Plot, s: Settings) -> Difference | None:
    name = f"plot {i}"
    if a.data == b.data:
        return None
    if a.mime != b.mime:
        return Difference("plot", name, f"{name} is {b.mime}, expected {a.mime}")
    if a.mime == "image/png":
        try:
            frac, note = png_difference(a.data, b.data, s.pixel_tolerance)
        except PNGError as exc:
            return Difference("plot", name, f"{name} differs (sha256; the PNG is {exc})")
        if frac <= s.plot_threshold:
            return None
        return Difference("plot", name, f"{name} differs in {frac:.1%} of pixels ({note})")
    if "svg" in a.mime:
        ta, tb = (normalise_svg(x.data.decode("utf-8", "replace")) for x in (a, b))
        if ta == tb:
            return None
        lines = text_diff(ta.replace("><", ">\n<"), tb.replace("><", ">\n<"), s.ignore, 0)
        return Difference("plot", name, f"{name} (SVG) differs", _short(lines, 10))
    return Difference("plot", name, f"{name} differs (sha256)")


def compare(expected: Outputs, actual: Outputs, settings: Settings | None = None) -> Report:
    """Why ``actual`` (a re-run) differs from ``expected`` (the record)."""
    s = settings or Settings()
    rep = Report()
    # inputs: a changed input is the likeliest cause of everything below, so it comes first
    for path in sorted(set(expected.inputs) | set(actual.inputs)):
        want, got = expected.inputs.get(path), actual.inputs.get(path)
        if want != got:
            what = "is missing" if got is None else ("is new" if want is None else "changed")
            details = [f"sha256 {(want or '-')[:12]} → {(got or '-')[:12]}"]
            rep.differences.append(Difference("input", path, f"input file {path} {what}", details))
    rep.compared["inputs"] = len(expected.inputs)
    if expected.status != actual.status:
        rep.differences.append(
            Difference("status", "status", f"status {expected.status} → {actual.status}")
        )
    if expected.transcript is not None and actual.transcript is not None:
        rep.compared["transcript"] = 1
        lines = text_diff(expected.transcript, actual.transcript, s.ignore, s.context)
        if lines:
            changed = sum(1 for x in lines if x[:1] in "+-")
            rep.differences.append(
                Difference(
                    "transcript",
                    "transcript",
                    f"the console output differs ({changed} line(s))",
                    _short(lines),
                )
            )
    rep.compared["plots"] = len(expected.plots)
    if len(expected.plots) != len(actual.plots):
        rep.differences.append(
            Difference(
                "plot", "plots", f"{len(actual.plots)} plot(s), expected {len(expected.plots)}"
            )
        )
    for i, (pa, pb) in enumerate(zip(expected.plots, actual.plots, strict=False), start=1):
        d = compare_plot(i, pa, pb, s)
        if d:
            rep.differences.append(d)
    rep.compared["files"] = len(expected.files)
    for path in sorted(set(expected.files) | set(actual.files)):
        if path not in actual.files:
            rep.differences.append(Difference("file", path, f"file {path} was not written"))
        elif path not in expected.files:
            rep.differences.append(Difference("file", path, f"file {path} was written too"))
        else:
            fa, fb = expected.files[path], actual.files[path]
            if fa is None or fb is None:
                continue  # bytes not kept on one side: nothing to compare
            d = compare_file(path, fa, fb, s)
            if d:
                rep.differences.append(d)
    if expected.environment is not None or actual.environment is not None:
        for line in environment_diff(expected.environment, actual.environment):
            rep.differences.append(Difference("environment", line, line, blocking=False))
    return rep


def main(argv: list[str] | None = None) -> int:
    """``python3 reprodiff.py EXPECTED ACTUAL``: compare two files (by their extension)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    with open(args[0], "rb") as fa, open(args[1], "rb") as fb:
        a, b = fa.read(), fb.read()
    d = compare_file(args[1], a, b, Settings())
    rep = Report([d] if d else [], {"files": 1})
    print(rep.text())
    return 0 if rep.reproduced else 1


if __name__ == "__main__":
    sys.exit(main())
