"""The web IDE in a real browser (Debian's headless Chromium driven by Playwright, the same
binary and flags as ``tests/test_web.py``) against a real hub: what the workspace page
costs to load, how soon its editor takes input, and how the console copes with a flood.

Measured:

1. Transferred size of the workspace page: every JS and CSS response of a cold-cache load
   of ``#/ws/<id>`` with a Python file opened in the editor (so the lazily loaded syntax
   chunks are counted), as the browser received it (the resource timing's encoded body
   size; the hub gzips .js/.css itself), next to the decoded size and our own gzip -6 of
   the body. Goal: < 500 KB gzip for JS + CSS.
2. Navigation → interactive editor: logged in by cookie (``POST /api/login`` in the
   browser context), ``page.goto(#/ws/<id>)``, wait for the file in the Files pane, click
   it, click into the CodeMirror editor, type one character and wait until the editor's
   document has it. Wall time from before ``goto`` to that moment (Python side, includes
   Playwright's round trips), and the page's own milestones (first animation frame in
   which the file list / the editor / the typed character exist, from the navigation
   start). Cold = a fresh browser context per run (empty HTTP cache); warm = new pages in
   one context after its first load (assets from the cache).
3. The console while ~10 MB stream in: Python
   ``for i in range(100000): sys.stdout.write(f"{i:08d} " + "x"*90 + "\\n")`` set into the
   console input and run with Enter (``--floods`` times, the console cleared before each). A
   requestAnimationFrame loop in the page records frame intervals from Enter until the line
   ``00099999 …`` is in the DOM: p50/p95/p99/max and the frames > 50 ms; the time until the
   last line is shown. Right after Enter, 20 characters are typed into the console input
   (``keyboard.type(delay=60)``): latency from the keydown's event timestamp to the input's
   document holding the character (MutationObserver) and to the next animation frame after
   it; the same typed into the idle console for comparison. Also: the WebSocket messages
   (count, bytes, time in the app's ``onmessage``, wrapped by an init script) and the long
   animation frames (Long Animation Frames API: script vs style/layout time, top script
   entry points). For reference, the same code through the Python client (no browser).
   3a. A diagnostic flood: the CDP sampling profiler on the page (top self-time functions)
   and a Python client attached to the same workspace (when the hub delivers the events to
   a client that is not a browser).
   3b. Reopening that workspace afterwards: the app asks for the session's stream from the
   start, so the page gets everything the floods printed; time until the console input
   takes a character and until the console shows the last line.

Every wait is bounded (``--budget`` seconds overall, per-step timeouts).

Usage: .venv/bin/python bench/web.py [--cold 5] [--warm 5] [--lines 100000] [--floods 3] [--quick]
       [--no-profile] [--json OUT] [--record]   (--record writes its section of bench/RESULTS.md)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    ROOT,
    Deadline,
    HubClient,
    P,
    machine_facts,
    new_workspace,
    record_section,
    run_ok,
    running_hub,
    table,
)

from conftest import PASSWORD  # noqa: E402

TITLE = "6. Web IDE in a browser (`bench/web.py`)"
GOAL_GZIP_KB = 500.0
LONG_FRAME_MS = 50.0
DIST = ROOT / "src" / "rsparkhub" / "web" / "dist"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
VIEWPORT = {"width": 1440, "height": 900}
STEP_MS = 60_000
EDITOR_FILE = "analysis.py"
TYPED = "abcdefghijklmnopqrst"  # 20 characters, no brackets or quotes (no auto-closing)

EDITOR_SEL = "[data-testid=editor] .editor-view:not([hidden]) .cm-content"
INPUT_SEL = "[data-testid=console-input] .cm-content"


def stream_code(lines: int) -> str:
    return f'import sys\nfor i in range({lines}): sys.stdout.write(f"{{i:08d}} " + "x"*90 + "\\n")'


def editor_script() -> str:
    """A ~300-line Python file (the editor's content)."""
    out = ['"""A made-up analysis script."""', "import math", "import statistics", ""]
    for i in range(40):
        out += [
            f"def step_{i}(xs, k={i}):",
            f'    """Step {i}: scale, shift and summarise."""',
            "    ys = [math.sqrt(abs(x)) * k + 1 for x in xs]",
            "    return statistics.fmean(ys), max(ys), min(ys)",
            "",
            "",
        ]
    out += ["if __name__ == '__main__':", "    data = list(range(1000))"]
    out += [f"    print(step_{i}(data))" for i in range(40)]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- in-page probes

# Runs before the app's scripts in every page (Playwright add_init_script: CDP, not subject to
# the page's CSP). Records: the app's WebSocket onmessage time per message, every keydown's
# event timestamp, long animation frames, and editor milestones.
INIT_JS = r"""
(() => {
  if (window.__bench) return;
  const MAX = 200000;
  const B = (window.__bench = { ws: [], keys: [], loaf: [], ms: {}, stopMilestones: false });
  const Native = window.WebSocket;
  const desc = Object.getOwnPropertyDescriptor(Native.prototype, "onmessage");
  class BenchSocket extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      let handler = null;
      Object.defineProperty(this, "onmessage", {
        configurable: true,
        get: () => handler,
        set: (fn) => {
          handler = fn;
          desc.set.call(this, fn ? (ev) => {
            const t0 = performance.now();
            try {
              return fn.call(this, ev);
            } finally {
              if (B.ws.length < MAX)
                B.ws.push([t0, performance.now() - t0, typeof ev.data === "string" ? ev.data.length : 0]);
            }
          } : null);
        },
      });
    }
  }
  window.WebSocket = BenchSocket;
  window.addEventListener("keydown", (ev) => {
    if (B.keys.length < MAX) B.keys.push([ev.key, ev.timeStamp, performance.now()]);
  }, true);
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (B.loaf.length >= 5000) break;
        B.loaf.push({
          start: e.startTime, duration: e.duration, blocking: e.blockingDuration,
          renderStart: e.renderStart, styleAndLayoutStart: e.styleAndLayoutStart,
          scripts: (e.scripts || []).map((s) => ({
            invoker: s.invoker, type: s.invokerType, fn: s.sourceFunctionName,
            url: s.sourceURL, pos: s.sourceCharPosition, duration: s.duration,
            forced: s.forcedStyleAndLayoutDuration,
          })),
        });
      }
    }).observe({ type: "long-animation-frame", buffered: true });
  } catch (e) {
    B.noLoaf = String(e);
  }
  // CodeMirror 6 keeps its view on the content element's tile (cmTile.root.view).
  B.view = (sel) => {
    const el = document.querySelector(sel);
    const t = el && el.cmTile;
    return t && t.root && t.root.view ? t.root.view : null;
  };
  const t0 = performance.now();
  B.loadFrames = [];
  const mile = (t) => {
    const now = performance.now();
    B.loadFrames.push(t);
    if (B.ms.files === undefined && document.querySelector("[data-testid=file-item]")) B.ms.files = now;
    if (B.ms.input === undefined && B.view(__INPUT_SEL__)) B.ms.input = now;
    const v = B.view(__EDITOR_SEL__);
    if (v) {
      if (B.ms.editor === undefined) B.ms.editor = now;
      else if (B.ms.typed === undefined && v.state.doc.length > __LEN0__) B.ms.typed = now;
    }
    if (!B.stopMilestones && B.ms.typed === undefined && now - t0 < 60000) requestAnimationFrame(mile);
  };
  requestAnimationFrame(mile);
})();
"""

# Starts the frame loop + the console-input observer for one streaming run.
START_JS = r"""
(cfg) => {
  const B = window.__bench;
  B.stopMilestones = true;
  B.frames = []; B.inputs = []; B.first = null; B.last = null; B.keys = []; B.ws = [];
  B.running = true;
  const out = document.querySelector("[data-testid=console-output]");
  const inputEl = document.querySelector(cfg.input);
  const view = B.view(cfg.input);
  const text = () => (view ? view.state.doc.toString() : inputEl.textContent);
  B.t0 = performance.now();
  const frame = (t) => {
    if (!B.running) return;
    const now = performance.now();
    B.frames.push(t);
    if (cfg.marker) {
      const lines = out.querySelectorAll("[data-testid=console-line][data-stream=stdout]");
      if (B.first === null && lines.length) B.first = now;
      if (B.last === null && lines.length && lines[lines.length - 1].textContent.startsWith(cfg.marker))
        B.last = now;
    }
    if (B.frames.length < 200000 && now - B.t0 < cfg.maxMs) requestAnimationFrame(frame);
    else B.running = false;
  };
  requestAnimationFrame(frame);
  if (B.mo) B.mo.disconnect();
  B.mo = new MutationObserver(() => {
    const rec = [performance.now(), text().length, null];
    B.inputs.push(rec);
    requestAnimationFrame(() => { rec[2] = performance.now(); });
  });
  B.mo.observe(inputEl, { childList: true, subtree: true, characterData: true });
  return B.t0;
}
"""

STOP_JS = r"""
() => {
  const B = window.__bench;
  B.running = false;
  if (B.mo) B.mo.disconnect();
  const out = document.querySelector("[data-testid=console-output]");
  return {
    frames: B.frames, inputs: B.inputs, keys: B.keys, ws: B.ws, first: B.first, last: B.last,
    t0: B.t0, loaf: B.loaf, noLoaf: B.noLoaf || null, origin: performance.timeOrigin,
    totalLines: out ? Number(out.dataset.totalLines) : null,
    droppedLines: out ? Number(out.dataset.droppedLines) : null,
    rendered: out ? out.querySelectorAll("[data-testid=console-line]").length : null,
  };
}
"""

SET_INPUT_JS = r"""
([sel, code]) => {
  const v = window.__bench.view(sel);
  if (!v) return false;
  v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: code }, selection: { anchor: code.length } });
  v.focus();
  return true;
}
"""


# --------------------------------------------------------------------------- helpers


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, int(round(q * len(s))) - 1))]


def ms(x: float | None) -> str:
    if x is None or x != x:
        return "–"
    return f"{x:.0f} ms" if x >= 100 else f"{x:.1f} ms"


def kb(n: float) -> str:
    return f"{n / 1000:.1f} KB"


def med_range(xs: list[float], count: bool = False) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = statistics.median(xs)
    mid = f"{m:g}" if count else ms(m)
    if len(xs) == 1:
        return f"{mid} (n=1)"
    return f"{mid} ({min(xs):.0f}–{max(xs):.0f}, n={len(xs)})"


def login(context: Any, url: str, name: str) -> None:
    r = context.request.post(f"{url}/api/login", data={"name": name, "password": PASSWORD})
    if not r.ok:
        raise RuntimeError(f"login failed: {r.status} {r.text()[:200]}")


def new_context(browser: Any, url: str, name: str, len0: int) -> Any:
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(STEP_MS)
    ctx.add_init_script(
        INIT_JS.replace("__EDITOR_SEL__", json.dumps(EDITOR_SEL))
        .replace("__INPUT_SEL__", json.dumps(INPUT_SEL))
        .replace("__LEN0__", str(len0))
    )
    login(ctx, url, name)
    return ctx


def chromium_version(path: str) -> str:
    try:
        return subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------- 1 + 2: page load, editor


def open_editor(page: Any, url: str, wid: str, len0: int) -> dict[str, Any]:
    """goto the workspace, open the file, type one character; wall time + page milestones."""
    t0 = time.perf_counter()
    page.goto(f"{url}/#/ws/{wid}", wait_until="commit")
    item = page.locator(f'[data-testid=file-item][data-path="{EDITOR_FILE}"]')
    item.wait_for(state="visible")
    t_files = time.perf_counter()
    item.click()
    content = page.locator(EDITOR_SEL)
    content.wait_for(state="visible")
    t_editor = time.perf_counter()
    content.click()
    page.keyboard.type("Q")
    page.wait_for_function(
        f"() => {{ const v = window.__bench.view({json.dumps(EDITOR_SEL)}); "
        f"return v && v.state.doc.length > {len0}; }}",
        polling="raf",
    )
    t_typed = time.perf_counter()
    nav = page.evaluate(
        """() => { const n = performance.getEntriesByType("navigation")[0] || {};
        const q = window.__bench.keys.filter((k) => k[0] === "Q").pop();
        return { dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, html: n.responseEnd,
          ms: window.__bench.ms, keyQ: q ? q[1] : null, loaf: window.__bench.loaf,
          res: performance.getEntriesByType("resource").map((e) => [e.name, e.initiatorType,
            e.startTime, e.responseEnd]) }; }"""
    )
    waterfall = [["(document)", "navigation", 0.0, nav.get("html")]]
    for name, kind, start, end in nav["res"]:
        path = urlsplit(name).path.replace(wid, "<id>")
        waterfall.append([path, kind, start, end])
    typed, key = nav["ms"].get("typed"), nav.get("keyQ")
    loaf = [e for e in nav["loaf"] if typed is None or e["start"] <= typed]
    return {
        "loaf_n": len(loaf),
        "loaf_ms": sum(e["duration"] for e in loaf),
        "loaf_blocking": sum(e["blocking"] or 0 for e in loaf),
        "loaf_scripts": loaf_scripts(loaf),
        "waterfall": waterfall,
        "key_to_doc": (typed - key) if typed is not None and key is not None else None,
        "wall_files": (t_files - t0) * 1000,
        "wall_editor": (t_editor - t0) * 1000,
        "wall_typed": (t_typed - t0) * 1000,
        "dcl": nav.get("dcl"),
        "load": nav.get("load"),
        "page_files": nav["ms"].get("files"),
        "page_editor": nav["ms"].get("editor"),
        "page_typed": nav["ms"].get("typed"),
    }


def transfer_sizes(page: Any, responses: list[Any]) -> list[dict[str, Any]]:
    """JS + CSS loaded by the page: resource timing sizes + our own gzip -6 of each body."""
    timing = {
        e["name"]: e
        for e in page.evaluate(
            """() => performance.getEntriesByType("resource").map((e) => ({ name: e.name,
            transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize }))"""
        )
    }
    index_html = (DIST / "index.html").read_text() if (DIST / "index.html").exists() else ""
    rows = []
    seen = set()
    for r in responses:
        path = urlsplit(r.url).path
        if not path.endswith((".js", ".css")) or path in seen:
            continue
        seen.add(path)
        body = r.body()
        sizes = r.request.sizes()
        t = timing.get(r.url, {})
        rows.append(
            {
                "file": path,
                "status": r.status,
                "initial": Path(path).name in index_html,
                "encoding": r.headers.get("content-encoding", ""),
                "raw": len(body),
                "wire": t.get("encoded") or sizes.get("responseBodySize"),
                "transfer": t.get("transfer"),
                "gzip6": len(gzip.compress(body, 6)),
            }
        )
    return rows


def bench_editor(
    browser: Any, url: str, wid: str, n_cold: int, n_warm: int, deadline: Deadline
) -> dict[str, Any]:
    len0 = len(editor_script())
    # every navigation starts with no open tabs (the app restores the last visit's tabs)
    clear_tabs = f"try {{ localStorage.removeItem('rsparkhub.tabs.{wid}'); }} catch (e) {{}}"
    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    sizes: list[dict[str, Any]] = []
    for i in range(n_cold):
        if i and deadline.left() < 150:
            break
        ctx = new_context(browser, url, "bench", len0)
        ctx.add_init_script(clear_tabs)
        try:
            page = ctx.new_page()
            responses: list[Any] = []
            page.on("response", lambda r, rs=responses: rs.append(r))
            cold.append(open_editor(page, url, wid, len0))
            print(f"   cold {i + 1}: {cold[-1]['wall_typed']:.0f} ms", flush=True)
            if i == 0:
                page.wait_for_load_state("networkidle", timeout=15_000)
                sizes = transfer_sizes(page, responses)
            if i == n_cold - 1:  # warm: new pages in this context (assets cached)
                page.close()
                for j in range(n_warm):
                    if deadline.left() < 120:
                        break
                    p = ctx.new_page()
                    warm.append(open_editor(p, url, wid, len0))
                    print(f"   warm {j + 1}: {warm[-1]['wall_typed']:.0f} ms", flush=True)
                    p.close()
        finally:
            ctx.close()
    return {"cold": cold, "warm": warm, "sizes": sizes}


# --------------------------------------------------------------------------- 3: console flood


def loaf_scripts(loaf: list[dict[str, Any]], top: int = 6) -> list[list[Any]]:
    """Long animation frames: script entry points by total duration ([key, ms, count])."""
    scripts: dict[str, list[float]] = {}
    for e in loaf:
        for s in e["scripts"]:
            key = f"{s['type']}: {s['invoker'] or '?'}"
            if s.get("fn"):
                key += f" → {s['fn']}"
            where = Path(urlsplit(s.get("url") or "").path).name
            if where:
                key += f" ({where}@{s.get('pos')})"
            scripts.setdefault(key, []).append(s["duration"])
    rows = [[k, sum(v), len(v)] for k, v in scripts.items()]
    return sorted(rows, key=lambda r: -r[1])[:top]


def typing_latency(data: dict[str, Any], typed: str) -> list[dict[str, float]]:
    """Per typed key: keydown event time → the input's doc holds it (DOM) / next frame."""
    keys = [k for k in data["keys"] if k[0] in typed and len(k[0]) == 1]
    inputs = data["inputs"]
    out = []
    for n, (_key, ts, handled) in enumerate(keys[: len(typed)]):
        rec = next((r for r in inputs if r[1] >= n + 1 and r[0] >= ts), None)
        if rec is None:
            continue
        out.append(
            {
                "t": ts,
                "queue": handled - ts,
                "dom": rec[0] - ts,
                "frame": (rec[2] - ts) if rec[2] is not None else float("nan"),
            }
        )
    return out


def clear_console(page: Any) -> None:
    btn = page.locator('[data-testid=console] button[title^="Clear"]')
    if btn.count():
        btn.first.click()


def run_console(
    page: Any, code: str, marker: str, typed: str, max_s: float, cdp: Any = None
) -> dict[str, Any]:
    """Run ``code`` from the console input (none: only type), typing ``typed`` meanwhile."""
    clear_console(page)
    page.wait_for_timeout(300)
    # a blank last line with the cursor at the end: Enter runs it at once (no is_complete)
    if not page.evaluate(SET_INPUT_JS, [INPUT_SEL, code + "\n" if code else ""]):
        raise RuntimeError("cannot find the console input's CodeMirror view")
    page.evaluate(START_JS, {"input": INPUT_SEL, "marker": marker, "maxMs": max_s * 1000})
    if cdp is not None:
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 500})
        cdp.send("Profiler.start")
    if code:
        page.keyboard.press("Enter")
    if typed:
        page.keyboard.type(typed, delay=60)
    page.wait_for_function(
        "() => window.__bench.last !== null || !window.__bench.running",
        polling=100,
        timeout=max_s * 1000 + 5000,
    )
    profile = cdp.send("Profiler.stop")["profile"] if cdp is not None else None
    page.wait_for_timeout(300)
    data = page.evaluate(STOP_JS)
    if cdp is not None:
        cdp.send("Profiler.disable")
    data["profile"] = profile
    # clear the input for the next run
    page.evaluate(SET_INPUT_JS, [INPUT_SEL, ""])
    return data


def summarise_stream(data: dict[str, Any], typed: str) -> dict[str, Any]:
    enter = next((k for k in data["keys"] if k[0] == "Enter"), None)
    start = enter[1] if enter else data["t0"]
    end = data["last"]
    window_end = end if end is not None else (data["frames"][-1] if data["frames"] else start)
    fr = [t for t in data["frames"] if start - 20 <= t <= window_end + 20]
    iv = [b - a for a, b in zip(fr, fr[1:], strict=False)]
    long = [x for x in iv if x > LONG_FRAME_MS]
    ws = [w for w in data["ws"] if w[0] >= start - 5]
    lat = [x for x in typing_latency(data, typed) if end is None or x["t"] <= end]
    loaf = [e for e in data["loaf"] if start - 5 <= e["start"] <= window_end + 5]
    loaf_script = loaf_layout = 0.0
    for e in loaf:
        loaf_script += sum(s["duration"] for s in e["scripts"])
        if e.get("styleAndLayoutStart"):
            loaf_layout += e["start"] + e["duration"] - e["styleAndLayoutStart"]
    top_scripts = loaf_scripts(loaf)
    return {
        "enter_epoch_ms": data["origin"] + start,
        "iv": iv,
        "shown_ms": (end - start) if end is not None else None,
        "first_ms": (data["first"] - start) if data["first"] is not None else None,
        "frames": len(iv),
        "p50": pct(iv, 0.5),
        "p95": pct(iv, 0.95),
        "p99": pct(iv, 0.99),
        "max": max(iv) if iv else float("nan"),
        "long": len(long),
        "long_ms": sum(long),
        "ws_msgs": len(ws),
        "ws_bytes": sum(w[2] for w in ws),
        "ws_handler_ms": sum(w[1] for w in ws),
        "ws_handler_max": max((w[1] for w in ws), default=0.0),
        "ws_last_ms": (ws[-1][0] - start) if ws else None,
        "ws_first_big_ms": next((w[0] - start for w in ws if w[2] >= 10_000), None),
        "typed_during": len(lat),
        "lat_dom": [x["dom"] for x in lat],
        "lat_frame": [x["frame"] for x in lat],
        "lat_queue": [x["queue"] for x in lat],
        "loaf_n": len(loaf),
        "loaf_ms": sum(e["duration"] for e in loaf),
        "loaf_script_ms": loaf_script,
        "loaf_layout_ms": loaf_layout,
        "loaf_top": top_scripts,
        "loaf_error": data.get("noLoaf"),
        "total_lines": data.get("totalLines"),
        "dropped_lines": data.get("droppedLines"),
        "rendered": data.get("rendered"),
    }


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several streaming runs: per-run values as lists, frames and key latencies pooled."""
    iv = [x for r in runs for x in r["iv"]]
    long = [x for x in iv if x > LONG_FRAME_MS]
    top: dict[str, list[float]] = {}
    for r in runs:
        for k, v, n in r["loaf_top"]:
            a = top.setdefault(k, [0.0, 0])
            a[0] += v
            a[1] += n
    per_run = ("shown_ms", "first_ms", "ws_first_big_ms", "ws_last_ms", "ws_msgs", "ws_bytes")
    out: dict[str, Any] = {k: [r[k] for r in runs] for k in per_run}
    out.update(
        {
            "n": len(runs),
            "ws_handler_ms": [r["ws_handler_ms"] for r in runs],
            "ws_handler_max": max(r["ws_handler_max"] for r in runs),
            "frames": len(iv),
            "p50": pct(iv, 0.5),
            "p95": pct(iv, 0.95),
            "p99": pct(iv, 0.99),
            "max": max(iv, default=float("nan")),
            "long": len(long),
            "long_ms": sum(long),
            "typed_during": sum(r["typed_during"] for r in runs),
            "lat_dom": [x for r in runs for x in r["lat_dom"]],
            "lat_frame": [x for r in runs for x in r["lat_frame"]],
            "lat_queue": [x for r in runs for x in r["lat_queue"]],
            "loaf_n": sum(r["loaf_n"] for r in runs),
            "loaf_ms": sum(r["loaf_ms"] for r in runs),
            "loaf_script_ms": sum(r["loaf_script_ms"] for r in runs),
            "loaf_layout_ms": sum(r["loaf_layout_ms"] for r in runs),
            "loaf_top": sorted(([k, v, n] for k, (v, n) in top.items()), key=lambda r: -r[1])[:6],
            "loaf_error": runs[-1]["loaf_error"],
            "total_lines": runs[-1]["total_lines"],
            "dropped_lines": runs[-1]["dropped_lines"],
            "rendered": runs[-1]["rendered"],
        }
    )
    return out


class StreamObserver(threading.Thread):
    """A second client (the Python one, no browser) attached to the same workspace during the
    diagnostic run: when the hub delivers the stream events to a client that is not a page."""

    def __init__(self, url: str, token: str, wid: str, max_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.wid, self.max_s = url, token, wid, max_s
        self.events: list[tuple[float, int]] = []  # (epoch ms, text length)
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on without it
            self.error = repr(exc)
        finally:
            self.ready.set()

    async def _main(self) -> None:
        end = time.monotonic() + self.max_s
        async with HubClient(self.url, self.token, timeout=60) as client:
            async with client.attach(self.wid) as att:
                while not self.stop.is_set() and time.monotonic() < end:
                    try:
                        async for msg in att.messages(timeout=0.25):
                            ev = msg.get("event") or {}
                            if self.ready.is_set() and ev.get("type") == "stream":
                                self.events.append((time.time() * 1000, len(ev.get("text", ""))))
                            if self.stop.is_set() or time.monotonic() > end:
                                break
                    except TimeoutError:
                        self.ready.set()  # 0.25 s without a message: the history replay is over


def summarise_profile(profile: dict[str, Any] | None, top: int = 12) -> list[list[Any]]:
    if not profile:
        return []
    nodes = {n["id"]: n for n in profile["nodes"]}
    self_us: dict[int, float] = {}
    for sid, dt in zip(profile.get("samples", []), profile.get("timeDeltas", []), strict=False):
        self_us[sid] = self_us.get(sid, 0.0) + dt
    agg: dict[str, float] = {}
    for nid, us in self_us.items():
        cf = nodes[nid]["callFrame"]
        name = cf.get("functionName") or "(anonymous)"
        where = Path(urlsplit(cf.get("url", "")).path).name
        key = (
            f"{name} {where}:{cf.get('lineNumber', 0) + 1}:{cf.get('columnNumber', 0) + 1}"
            if where
            else name
        )
        agg[key] = agg.get(key, 0.0) + us
    total = sum(agg.values()) or 1.0
    busy = sum(v for k, v in agg.items() if k != "(idle)") or 1.0
    rows = sorted(agg.items(), key=lambda kv: -kv[1])[:top]
    return [
        [k, v / 1000, 100 * v / total, 100 * v / busy if k != "(idle)" else None] for k, v in rows
    ]


def bench_console(
    browser: Any,
    url: str,
    token: str,
    wid: str,
    lines: int,
    reps: int,
    profile: bool,
    deadline: Deadline,
) -> dict[str, Any]:
    ctx = new_context(browser, url, "bench", 0)
    try:
        page = ctx.new_page()
        page.goto(f"{url}/#/ws/{wid}")
        page.locator("[data-testid=connection-status][data-state=open]").wait_for(state="attached")
        page.select_option("[data-testid=console-language]", "python")
        page.locator(INPUT_SEL).wait_for(state="visible")
        page.locator(INPUT_SEL).click()
        page.keyboard.type("1+1")
        page.keyboard.press("Enter")
        page.locator(
            "[data-testid=console-line][data-stream=result]", has_text="2"
        ).first.wait_for()
        # idle: frames for 3 s, 20 characters typed into the idle input
        idle = run_console(page, "", "", TYPED, 3.0)
        idle_frames = [b - a for a, b in zip(idle["frames"], idle["frames"][1:], strict=False)]
        idle_lat = typing_latency(idle, TYPED)
        marker = f"{lines - 1:08d} "
        code = stream_code(lines)
        runs = []
        for i in range(reps):
            if i and deadline.left() < 120:
                break
            max_s = max(30.0, min(150.0, deadline.left() - 60))
            runs.append(summarise_stream(run_console(page, code, marker, TYPED, max_s), TYPED))
            r = runs[-1]
            print(
                f"   flood {i + 1}: last line after {ms(r['shown_ms'])}, max frame {ms(r['max'])}",
                flush=True,
            )
        diag: dict[str, Any] | None = None
        if profile and deadline.left() > 60:
            print("   diagnostic run (profiler + a Python client attached)", flush=True)
            obs = StreamObserver(url, token, wid, max_s=min(120.0, deadline.left() - 20))
            obs.start()
            obs.ready.wait(60)
            cdp = ctx.new_cdp_session(page)
            pdata = run_console(
                page, code, marker, "", max(30.0, min(120.0, deadline.left() - 20)), cdp
            )
            time.sleep(0.5)
            obs.stop.set()
            obs.join(30)
            ps = summarise_stream(pdata, "")
            enter = ps["enter_epoch_ms"]
            diag = {
                "stream": {k: v for k, v in ps.items() if k != "iv"},
                "profile_top": summarise_profile(pdata["profile"]),
                "observer_error": obs.error,
                "observer_first_ms": (obs.events[0][0] - enter) if obs.events else None,
                "observer_last_ms": (obs.events[-1][0] - enter) if obs.events else None,
                "observer_bytes": sum(n for _, n in obs.events),
                "observer_msgs": len(obs.events),
            }
        reopen_s = None
        if deadline.left() > 45:
            print("   reopening the workspace after the floods", flush=True)
            page.close()
            reopen_s = reopen(ctx, url, wid, marker, min(90.0, deadline.left() - 15))
        return {
            "reopen": reopen_s,
            "idle_frames": {
                "p50": pct(idle_frames, 0.5),
                "max": max(idle_frames, default=float("nan")),
                "n": len(idle_frames),
            },
            "idle_lat_dom": [x["dom"] for x in idle_lat],
            "idle_lat_frame": [x["frame"] for x in idle_lat],
            "stream": combine(runs) if runs else {},
            "diag": diag,
        }
    finally:
        ctx.close()


# the time the console first showed its final state: the marker as the last stdout line, and
# no WebSocket message since for 500 ms (so the end of an earlier flood does not count)
SETTLED_JS = r"""
(m) => {
  const B = window.__bench;
  const now = performance.now();
  const ls = document.querySelectorAll(
    "[data-testid=console-output] [data-testid=console-line][data-stream=stdout]");
  const lastWs = B.ws.length ? B.ws[B.ws.length - 1][0] : 0;
  const ok = ls.length > 0 && ls[ls.length - 1].textContent.startsWith(m);
  if (!ok || (B.markSince !== undefined && lastWs > B.markSince)) B.markSince = undefined;
  if (ok && B.markSince === undefined) B.markSince = now;
  return ok && now - lastWs > 500 ? B.markSince : false;
}
"""


def reopen(ctx: Any, url: str, wid: str, marker: str, max_s: float) -> dict[str, Any]:
    """A new page on the workspace after the floods: the app replays the session's stream."""
    page = ctx.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(f"{url}/#/ws/{wid}", wait_until="commit")
        inp = page.locator(INPUT_SEL)
        inp.wait_for(state="visible", timeout=max_s * 1000)
        inp.click(timeout=max_s * 1000)
        page.keyboard.type("Q")
        t_input = page.wait_for_function(
            f"() => {{ const v = window.__bench.view({json.dumps(INPUT_SEL)}); "
            "return v && v.state.doc.length > 0 ? performance.now() : false; }",
            polling="raf",
            timeout=max_s * 1000,
        ).json_value()
        wall_input = time.perf_counter() - t0
        t_last = page.wait_for_function(
            SETTLED_JS, arg=marker, polling="raf", timeout=max_s * 1000
        ).json_value()
        wall_last = time.perf_counter() - t0 - 0.5
        d = page.evaluate(
            """() => { const B = window.__bench;
            const out = document.querySelector("[data-testid=console-output]");
            const q = B.keys.filter((k) => k[0] === "Q").pop();
            return { ws: B.ws, frames: B.loadFrames, loaf: B.loaf, keyQ: q ? q[1] : null,
                     inputShown: B.ms.input === undefined ? null : B.ms.input,
                     total: out ? Number(out.dataset.totalLines) : null }; }"""
        )
    finally:
        page.close()
    fr = [t for t in d["frames"] if t <= t_last]
    iv = [b - a for a, b in zip(fr, fr[1:], strict=False)]
    loaf = [e for e in d["loaf"] if e["start"] <= t_last]
    return {
        "wall_input": wall_input * 1000,
        "wall_last": wall_last * 1000,
        "page_input": t_input,
        "page_last": t_last,
        "key_to_input": (t_input - d["keyQ"]) if d["keyQ"] is not None else None,
        "page_input_shown": d["inputShown"],
        "page_key": d["keyQ"],
        "ws_msgs": len(d["ws"]),
        "ws_bytes": sum(w[2] for w in d["ws"]),
        "ws_handler_ms": sum(w[1] for w in d["ws"]),
        "total_lines": d["total"],
        "frames": len(iv),
        "max": max(iv, default=float("nan")),
        "p95": pct(iv, 0.95),
        "long": len([x for x in iv if x > LONG_FRAME_MS]),
        "long_ms": sum(x for x in iv if x > LONG_FRAME_MS),
        "loaf_n": len(loaf),
        "loaf_ms": sum(e["duration"] for e in loaf),
        "loaf_top": loaf_scripts(loaf, 4),
    }


# --------------------------------------------------------------------------- setup + main


async def setup(url: str, token: str, lines: int) -> dict[str, Any]:
    async with HubClient(url, token, timeout=300) as client:
        wid_editor = await new_workspace(client, "web-editor")
        await client.save_text(wid_editor, EDITOR_FILE, editor_script(), 0)
        async with client.attach(wid_editor) as att:  # the session runs before the page loads
            await run_ok(att, "1", "r")
        wid_console = await new_workspace(client, "web-console")
        async with client.attach(wid_console) as att:
            await run_ok(att, "1", "python")
        # reference: the same output through the Python client, no browser
        wid_ref = await new_workspace(client, "web-ref")
        async with client.attach(wid_ref) as att:
            await run_ok(att, "1", "python")
            t = time.perf_counter()
            first = done = None
            nbytes = 0
            async for ev in att.execute(stream_code(lines), language="python", timeout=300):
                if isinstance(ev, P.StreamEvent):
                    first = first or time.perf_counter() - t
                    nbytes += len(ev.text.encode())
                elif isinstance(ev, P.DoneEvent):
                    done = time.perf_counter() - t
                    if ev.status != "ok":
                        raise RuntimeError(f"reference run failed: {ev}")
        await client.stop_session(wid_ref)
    return {
        "editor": wid_editor,
        "console": wid_console,
        "ref": {"s": done, "first_s": first, "bytes": nbytes},
    }


def main_run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    deadline = Deadline(args.budget)
    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("Debian's chromium is needed (scripts/install.sh installs it)")
    if not (DIST / "index.html").exists():
        raise SystemExit("no IDE build: run `cd web && npm run build` first")
    out: dict[str, Any] = {
        "chromium": chromium_version(chromium),
        "build": sorted(p.name for p in (DIST / "assets").iterdir()),
        "lines": args.lines,
    }
    with running_hub() as hub:
        token = hub.make_user("bench")
        print("== setup (workspaces, sessions, Python-client reference)", flush=True)
        ids = asyncio.run(setup(hub.url, token, args.lines))
        out["ref"] = ids["ref"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                print("== page load and editor", flush=True)
                out["editor"] = bench_editor(
                    browser, hub.url, ids["editor"], args.cold, args.warm, deadline
                )
                print("== console flood", flush=True)
                out["console"] = bench_console(
                    browser,
                    hub.url,
                    token,
                    ids["console"],
                    args.lines,
                    args.floods,
                    args.profile,
                    deadline,
                )
            finally:
                browser.close()
    return out


# --------------------------------------------------------------------------- report


def verdicts(data: dict[str, Any]) -> list[str]:
    rows = data["editor"]["sizes"]
    lines = []
    if rows:
        wire = sum(r["wire"] or r["gzip6"] for r in rows)
        ok = "meets" if wire / 1000 < GOAL_GZIP_KB else "**misses**"
        lines.append(
            f"- web IDE: JS + CSS of the workspace page {kb(wire)} gzip on the wire "
            f"({kb(sum(r['raw'] for r in rows))} decoded, {len(rows)} files) — {ok} the goal "
            f"< {GOAL_GZIP_KB:.0f} KB"
        )
    return lines


def observations(data: dict[str, Any]) -> list[str]:
    out = []
    ed = data["editor"]
    cold, warm = ed["cold"], ed["warm"]
    if cold and warm:
        out.append(
            f"- Editor: navigation → typed character in the document {ms(statistics.median(c['wall_typed'] for c in cold))} "
            f"cold / {ms(statistics.median(w['wall_typed'] for w in warm))} warm (wall, with Playwright's "
            "round trips); the page itself has the file list at "
            f"{ms(statistics.median(c['page_files'] for c in cold if c['page_files']))} cold / "
            f"{ms(statistics.median(w['page_files'] for w in warm if w['page_files']))} warm after the navigation start."
        )
    c = data["console"]
    s = c["stream"]
    ref = data["ref"]
    if s and all(x is not None for x in s["shown_ms"]):
        out.append(
            f"- Console flood: {ref['bytes'] / 1e6:.1f} MB reach the Python client in "
            f"{ref['s']:.2f} s (the first stream event at {ref['first_s']:.2f} s); the page shows "
            f"the last line {statistics.median(s['shown_ms']) / 1000:.2f} s after Enter (median of "
            f"{s['n']}), {s['long']} frames > {LONG_FRAME_MS:.0f} ms (max {ms(s['max'])}); the app's "
            f"onmessage took {ms(statistics.median(s['ws_handler_ms']))} per flood in total."
        )
    d = c.get("diag")
    if d and d.get("observer_last_ms") is not None:
        ds = d["stream"]
        out.append(
            f"- Diagnostic flood: a Python client attached to the same workspace got the stream "
            f"events {ms(d['observer_first_ms'])} → {ms(d['observer_last_ms'])} after Enter, the "
            f"page's onmessage ran {ms(ds['ws_first_big_ms'])} → {ms(ds['ws_last_ms'])}."
        )
    return out


def report(data: dict[str, Any]) -> str:
    ed = data["editor"]
    rows = ed["sizes"]
    parts = []
    parts.append("**Goals**\n\n" + "\n".join(verdicts(data) or ["- (no size data)"]))
    obs = observations(data)
    if obs:
        parts.append("\n**Summary**\n\n" + "\n".join(obs))

    # 1. sizes
    srt = sorted(rows, key=lambda r: (not r["initial"], -r["raw"]))
    trows = [
        [
            f"`{r['file']}`",
            "index.html" if r["initial"] else "lazy",
            r["encoding"] or "none",
            kb(r["raw"]),
            kb(r["wire"]) if r["wire"] else "–",
            kb(r["gzip6"]),
        ]
        for r in srt
    ]
    for label, sel in (("initial (index.html)", True), ("lazy (loaded by the page)", False)):
        part = [r for r in rows if r["initial"] == sel]
        if part:
            trows.append(
                [
                    f"**{label}**",
                    "",
                    "",
                    kb(sum(r["raw"] for r in part)),
                    kb(sum(r["wire"] or 0 for r in part)),
                    kb(sum(r["gzip6"] for r in part)),
                ]
            )
    trows.append(
        [
            "**total JS + CSS**",
            "",
            "",
            f"**{kb(sum(r['raw'] for r in rows))}**",
            f"**{kb(sum(r['wire'] or 0 for r in rows))}**",
            f"**{kb(sum(r['gzip6'] for r in rows))}**",
        ]
    )
    parts.append(
        "\n**1. JS + CSS of the workspace page** (cold cache, `#/ws/<id>` with a Python file "
        "open in the editor and R as the console language; KB = 1000 bytes; on the wire = the "
        "resource timing's encodedBodySize; gzip -6 = our own `gzip.compress(body, 6)`)\n"
    )
    parts.append(
        table(["file", "loaded by", "Content-Encoding", "decoded", "on the wire", "gzip -6"], trows)
    )

    # 2. editor
    def col(runs: list[dict[str, Any]], key: str) -> str:
        return med_range([r[key] for r in runs if r.get(key) is not None], key == "loaf_n")

    erows = []
    for label, key in (
        ("wall: goto → file listed", "wall_files"),
        ("wall: goto → editor shown (after the click)", "wall_editor"),
        ("wall: goto → typed character in the doc", "wall_typed"),
        ("page: DOMContentLoaded", "dcl"),
        ("page: load event", "load"),
        ("page: file listed (first frame)", "page_files"),
        ("page: editor in the DOM (first frame)", "page_editor"),
        ("page: typed character in the doc (first frame)", "page_typed"),
        ("page: that character's keydown → in the doc (first frame)", "key_to_doc"),
        ("page: long animation frames until then: count", "loaf_n"),
        ("page: … their total duration", "loaf_ms"),
        ("page: … their blocking duration (beyond 50 ms each)", "loaf_blocking"),
    ):
        erows.append([label, col(ed["cold"], key), col(ed["warm"], key)])

    parts.append(
        "\n**2. Navigation → interactive editor** (logged in by cookie; the session already "
        "running; median (min–max, n). Cold = a fresh browser context per run (empty cache); "
        "warm = new pages in the last context. wall = Python's clock around Playwright; page = "
        "`performance.now()` from the navigation start)\n"
    )
    parts.append(table(["measurement", "cold", "warm"], erows))
    if ed["cold"] and ed["warm"]:
        parts.append(
            "\nRequests of the first cold and the last warm navigation (start → response end, "
            "ms from the navigation start; resource timing; the WebSocket is not listed)\n"
        )
        wrows: dict[str, list[str]] = {}
        for k, run in enumerate((ed["cold"][0], ed["warm"][-1])):
            seen: dict[str, int] = {}
            for path, kind, start, end in run["waterfall"]:
                n = seen[path] = seen.get(path, 0) + 1
                key = path if n == 1 else f"{path} (#{n})"
                row = wrows.setdefault(key, [f"`{key}`", kind, "–", "–"])
                row[2 + k] = f"{start:.0f} → {end:.0f}" if end is not None else "?"
        parts.append(table(["request", "type", "cold", "warm"], list(wrows.values())))
    agg: dict[str, list[float]] = {}
    for run in ed["cold"] + ed["warm"]:
        for k, v, n in run.get("loaf_scripts", []):
            a = agg.setdefault(k, [0.0, 0])
            a[0] += v
            a[1] += n
    if agg:
        runs = len(ed["cold"]) + len(ed["warm"])
        parts.append(
            f"\nLong animation frames during these {runs} page loads: top script entry points "
            "(total over all runs, count)\n"
        )
        top = sorted(agg.items(), key=lambda kv: -kv[1][0])[:6]
        parts.append(
            table(
                ["entry point", "total", "count"], [[f"`{k}`", ms(v), str(n)] for k, (v, n) in top]
            )
        )

    # 3. console
    c = data["console"]
    s = c["stream"]
    ref = data["ref"]

    def med_max(xs: list[float]) -> str:
        return f"{ms(statistics.median(xs))} / {ms(max(xs))}" if xs else "–"

    srows = []
    if s:
        srows = [
            [
                "Python client (no browser, another workspace): execute → first stream event / done",
                f"{ms(ref['first_s'] * 1000)} / {ms(ref['s'] * 1000)} ({ref['bytes'] / 1e6:.2f} MB)",
            ],
            [
                "Enter → first big (≥ 10 KB) WebSocket message in the page",
                med_range(s["ws_first_big_ms"]),
            ],
            ["Enter → first output line in the DOM", med_range(s["first_ms"])],
            [
                f"Enter → last line (`{data['lines'] - 1:08d} …`) in the DOM",
                med_range(s["shown_ms"]),
            ],
            ["Enter → last WebSocket message handled", med_range(s["ws_last_ms"])],
            [
                "WebSocket messages per flood: count, text",
                f"{statistics.median(s['ws_msgs']):g}, {statistics.median(s['ws_bytes']) / 1e6:.1f} MB",
            ],
            [
                "the app's onmessage per flood: total (longest single message)",
                f"{med_range(s['ws_handler_ms'])} ({ms(s['ws_handler_max'])})",
            ],
            ["frames (rAF intervals) during streaming, all floods", str(s["frames"])],
            ["frame time p50 / p95 / p99", f"{ms(s['p50'])} / {ms(s['p95'])} / {ms(s['p99'])}"],
            ["frame time max", ms(s["max"])],
            [
                f"frames > {LONG_FRAME_MS:.0f} ms (count, total time)",
                f"{s['long']} ({ms(s['long_ms'])})",
            ],
            [
                "idle console (3 s): frame p50 / max",
                f"{ms(c['idle_frames']['p50'])} / {ms(c['idle_frames']['max'])}",
            ],
            [
                f"typing while it streams ({s['typed_during']} keys before the last line, all "
                "floods): keydown → in the input's doc, median / max",
                med_max(s["lat_dom"]),
            ],
            ["… keydown → the next frame after that, median / max", med_max(s["lat_frame"])],
            [
                "… keydown waiting for the main thread (handler − event time), median / max",
                med_max(s["lat_queue"]),
            ],
            [
                "typing into the idle console: keydown → in the doc, median / max",
                med_max(c["idle_lat_dom"]),
            ],
            ["… keydown → the next frame after that, median / max", med_max(c["idle_lat_frame"])],
            [
                "long animation frames (LoAF), all floods: count, total, scripts / style+layout",
                f"{s['loaf_n']}, {ms(s['loaf_ms'])}, {ms(s['loaf_script_ms'])} / {ms(s['loaf_layout_ms'])}"
                + (f" (LoAF unavailable: {s['loaf_error']})" if s.get("loaf_error") else ""),
            ],
            [
                "console after the last flood: data-total-lines / dropped / rendered lines",
                f"{s['total_lines']} / {s['dropped_lines']} / {s['rendered']}",
            ],
        ]
    parts.append(
        f"\n**3. Console while {data['lines']:,} lines (~{data['lines'] * 100 / 1e6:.0f} MB) of "
        f"Python output stream in** (floods: {s.get('n', 0)}, the console cleared before each; viewport "
        f"{VIEWPORT['width']}×{VIEWPORT['height']}; frames = intervals between "
        "requestAnimationFrame callbacks from Enter to the frame that finds the last line; "
        "20 keys typed with a 60 ms delay right after Enter; median (min–max, n))\n"
    )
    parts.append(table(["measurement", "value"], srows))
    if s and s["loaf_top"]:
        parts.append("\nLong animation frames during the floods: top script entry points\n")
        parts.append(
            table(
                ["entry point", "total", "count"],
                [[f"`{k}`", ms(v), str(n)] for k, v, n in s["loaf_top"]],
            )
        )
    d = c.get("diag")
    if d:
        ds = d["stream"]
        parts.append(
            "\n**3a. Diagnostic flood** (the same flood without typing, with the CDP sampling "
            "profiler on the page (0.5 ms) and a Python client attached to the same workspace; "
            f"the page showed the last line after {ms(ds['shown_ms'])}, max frame "
            f"{ms(ds['max'])})\n"
        )
        parts.append(
            table(
                ["measurement", "value"],
                [
                    [
                        "Python client on the same workspace: first / last stream event after Enter",
                        f"{ms(d['observer_first_ms'])} / {ms(d['observer_last_ms'])} "
                        f"({d['observer_msgs']} events, {d['observer_bytes'] / 1e6:.1f} MB)"
                        + (f" — error: {d['observer_error']}" if d.get("observer_error") else ""),
                    ],
                    [
                        "page: first big / last WebSocket message handled after Enter",
                        f"{ms(ds['ws_first_big_ms'])} / {ms(ds['ws_last_ms'])} "
                        f"({ds['ws_msgs']} messages, onmessage total {ms(ds['ws_handler_ms'])})",
                    ],
                ],
            )
        )
        if d["profile_top"]:
            parts.append("\nTop self time in the page during that flood\n")
            parts.append(
                table(
                    [
                        "function (minified bundle: name file:line:col)",
                        "self",
                        "% of samples",
                        "% of non-idle",
                    ],
                    [
                        [f"`{k}`", ms(v), f"{p:.1f}%", f"{b:.1f}%" if b is not None else "–"]
                        for k, v, p, b in d["profile_top"]
                    ],
                )
            )
    ro = c.get("reopen")
    if ro:
        parts.append(
            "\n**3b. Reopening that workspace after the floods** (a new page, assets cached; "
            "the app asks for the session's stream from the start, so the hub replays "
            "everything the session printed)\n"
        )
        parts.append(
            table(
                ["measurement", "value"],
                [
                    [
                        "goto → a character typed into the console input is in its doc (wall / page)",
                        f"{ms(ro['wall_input'])} / {ms(ro['page_input'])}",
                    ],
                    [
                        "page: the console input in the DOM / the keydown (Playwright's click and "
                        "type) / → in the doc",
                        f"{ms(ro.get('page_input_shown'))} / {ms(ro.get('page_key'))} / "
                        f"+{ms(ro['key_to_input'])}",
                    ],
                    [
                        "goto → the console shows the last line of the replay (wall / page)",
                        f"{ms(ro['wall_last'])} / {ms(ro['page_last'])}",
                    ],
                    [
                        "WebSocket messages: count, text, app's onmessage total",
                        f"{ro['ws_msgs']}, {ro['ws_bytes'] / 1e6:.1f} MB, {ms(ro['ws_handler_ms'])}",
                    ],
                    ["console lines (data-total-lines)", str(ro["total_lines"])],
                    [
                        "frames until then: count, p95, max",
                        f"{ro['frames']}, {ms(ro['p95'])}, {ms(ro['max'])}",
                    ],
                    [
                        f"frames > {LONG_FRAME_MS:.0f} ms (count, total time)",
                        f"{ro['long']} ({ms(ro['long_ms'])})",
                    ],
                    ["long animation frames: count, total", f"{ro['loaf_n']}, {ms(ro['loaf_ms'])}"],
                ]
                + [[f"… `{k}`", f"{ms(v)} ({n}×)"] for k, v, n in ro["loaf_top"]],
            )
        )
    parts.append(f"\nBrowser: {data['chromium']} (headless, the flags of tests/test_web.py).")
    return "\n".join(parts)


def record(text: str, facts: dict[str, str], wall: float, load: tuple[str, str]) -> None:
    record_section(TITLE, "bench/web.py", text, facts, wall, load)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=5, help="fresh-context navigations")
    ap.add_argument("--warm", type=int, default=5, help="cached navigations")
    ap.add_argument("--lines", type=int, default=100_000, help="console flood: 100-byte lines")
    ap.add_argument("--floods", type=int, default=3, help="measured console floods")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--quick", action="store_true", help="small sizes, for checking the script")
    ap.add_argument("--budget", type=float, default=300, help="seconds")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    ap.add_argument(
        "--from-json", type=Path, help="no run: report (and --record) an earlier --json"
    )
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        text = report(saved["data"])
        print(text)
        if args.record:
            run = saved["run"]
            record(text, run["facts"], run["wall_s"], tuple(run["load"]))  # type: ignore[arg-type]
        return
    if args.quick:
        args.cold, args.warm, args.lines, args.floods = 1, 2, 20_000, 1
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t = time.monotonic()
    data = main_run(args)
    wall = time.monotonic() - t
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(data)
    print(text)
    facts = machine_facts()
    facts["chromium"] = data["chromium"]
    facts["mode"] = "quick" if args.quick else "full"
    run = {"facts": facts, "wall_s": wall, "load": [load0, load1]}
    if args.json:
        args.json.write_text(
            json.dumps(
                {"data": data, "report": text, "goals": verdicts(data), "run": run}, indent=1
            )
        )
    if args.record:
        record(text, facts, wall, (load0, load1))


if __name__ == "__main__":
    main()
