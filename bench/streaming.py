"""Streaming: 100,000 printed lines into the web console, and a session's memory while it
prints 100 MB — this checkout side by side with a previous revision, in one run (issue #14).

1. Lines in Chromium. For R and Python, one execution prints 100,000 numbered 100-byte lines
   in a loop (R: ``cat(sprintf(…))`` per line; Python: ``print(…)`` per line), typed into the
   console input of a workspace whose session is warm. In the page (requestAnimationFrame
   loop): the console's line count (``data-total-lines``) per frame, so the time each
   10,000-line slice took to reach the screen and its rate; Enter → the last line shown
   (end to end); the longest frame and the long tasks (PerformanceObserver ``longtask``).
2. Memory. Through the Python client (no browser), one execution prints 100 MB in 1 MB
   writes of numbered lines (Python) and 20 MB in ``cat`` calls (R); the peak RSS growth of
   the session's agent and kernel (psutil, every 20 ms), and whether every byte arrived in
   order (SHA-256 of the whole stream).

``--before REV`` starts a second hub running that revision (a temporary worktree and venv,
as ``isolation.before_env`` makes them; its agent, kernels and web bundle are that
revision's) and measures it the same way, interleaved. Both hubs then run without the
sandbox (a sandbox shows a session only this venv's package).

Usage: .venv/bin/python bench/streaming.py [--before REV] [--langs r,python] [--lines 100000]
       [--mb 100] [--no-browser] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402
from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    P,
    machine_facts,
    new_workspace,
    publish,
    run_ok,
    running_hub,
    table,
)

from web import (  # noqa: E402
    CHROMIUM_ARGS,
    INPUT_SEL,
    SET_INPUT_JS,
    chromium_version,
    new_context,
)

SLICE = 10_000
LONG_MS = 50.0
MIB = 1024 * 1024
X90 = "x" * 90


FLUSH = {"each": False}  # --flush: Python flushes every line (print(..., flush=True))


def lines_code(language: str, n: int) -> str:
    if language == "r":
        return f'for (i in 0:{n - 1}) cat(sprintf("%08d %s\\n", i, strrep("x", 90)))'
    flush = ", flush=True" if FLUSH["each"] else ""
    return f"for i in range({n}): print(f'{{i:08d}} ' + 'x' * 90{flush})"


# ----------------------------------------------------------------------------- 1: browser

START_JS = r"""
(cfg) => {
  const out = document.querySelector("[data-testid=console-output]");
  const S = (window.__stream = { frames: [], totals: [], long: [], last: null, running: true });
  S.base = Number(out.dataset.totalLines || 0);
  try {
    S.obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) S.long.push([e.startTime, e.duration]);
    });
    S.obs.observe({ type: "longtask" });
  } catch (e) { S.noLongtask = String(e); }
  const t0 = performance.now();
  const frame = (t) => {
    if (!S.running) return;
    const now = performance.now();
    S.frames.push(t);
    S.totals.push([now, Number(out.dataset.totalLines || 0)]);
    if (S.last === null) {
      const ls = out.querySelectorAll("[data-testid=console-line][data-stream=stdout]");
      if (ls.length && ls[ls.length - 1].textContent.startsWith(cfg.marker)) S.last = now;
    }
    if (S.last === null && now - t0 < cfg.maxMs) requestAnimationFrame(frame);
    else S.running = false;
  };
  requestAnimationFrame(frame);
  return t0;
}
"""

STOP_JS = r"""
() => { const S = window.__stream; S.running = false; if (S.obs) S.obs.disconnect();
        return { frames: S.frames, totals: S.totals, long: S.long, last: S.last, base: S.base,
                 noLongtask: S.noLongtask || null }; }
"""


def browser_run(ctx: Any, url: str, wid: str, language: str, n: int, max_s: float) -> dict:
    page = ctx.new_page()
    try:
        page.goto(f"{url}/#/ws/{wid}")
        page.locator("[data-testid=connection-status][data-state=open]").wait_for(state="attached")
        page.select_option("[data-testid=console-language]", language)
        page.locator(INPUT_SEL).wait_for(state="visible")
        page.wait_for_timeout(500)
        code = lines_code(language, n)
        if not page.evaluate(SET_INPUT_JS, [INPUT_SEL, code + "\n"]):
            raise RuntimeError("cannot find the console input's CodeMirror view")
        marker = f"{n - 1:08d} "
        t0 = page.evaluate(START_JS, {"marker": marker, "maxMs": max_s * 1000})
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => !window.__stream.running", polling=200, timeout=max_s * 1000 + 5000
        )
        d = page.evaluate(STOP_JS)
    finally:
        page.close()
    end = d["last"]
    # the time each slice of lines was first on screen (line counts include the echo)
    first_at: list[float] = []
    for t, total in d["totals"]:
        while len(first_at) < n // SLICE and total - d["base"] >= (len(first_at) + 1) * SLICE:
            first_at.append(t - t0)
    fr = [t for t in d["frames"] if end is None or t <= end + 20]
    iv = [b - a for a, b in zip(fr, fr[1:], strict=False)]
    long = [dur for start, dur in d["long"] if end is None or start <= end]
    return {
        "complete": end is not None,
        "seconds": (end - t0) / 1000 if end is not None else None,
        "slices_s": [s / 1000 for s in first_at],
        "max_frame_ms": max(iv, default=float("nan")),
        "frames_over_50": len([x for x in iv if x > LONG_MS]),
        "longtasks": len(long),
        "max_longtask_ms": max(long, default=0.0),
        "no_longtask": d["noLongtask"],
    }


# ----------------------------------------------------------------------------- 2: memory


def flood_code(language: str, mb: int) -> str:
    if language == "r":  # top-level expressions (one loop would be quadratic before 6a467b7)
        return "".join(
            f"cat(paste0(sprintf('%09d', {c * SLICE} + 0:{SLICE - 1}), '{X90}\\n'), sep = '')\n"
            for c in range(mb)
        )
    return (
        "import sys\n"
        f"for c in range({mb}):\n"
        f"    sys.stdout.write(''.join(f'{{c * {SLICE} + i:09d}}{X90}\\n' for i in range({SLICE})))\n"
    )


def flood_sha256(mb: int) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for c in range(mb):
        chunk = "".join(f"{c * SLICE + i:09d}{X90}\n" for i in range(SLICE)).encode()
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def agent_and_kernel(session_id: str, language: str) -> dict[str, psutil.Process]:
    found: dict[str, psutil.Process] = {}
    needle = "ipykernel" if language == "python" else "IRkernel"
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
            if session_id in " ".join(cmd) and "rsparkhub.agent" in cmd:
                found["agent"] = p
                for c in p.children(recursive=True):
                    if needle in " ".join(c.cmdline()):
                        found["kernel"] = c
        except psutil.Error:
            continue
    return found


class PeakRss(threading.Thread):
    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.base = {k: p.memory_info().rss for k, p in procs.items()}
        self.peak = dict(self.base)
        self._halt = threading.Event()

    def run(self) -> None:
        for _ in range(30_000):
            for k, p in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[k] = max(self.peak[k], p.memory_info().rss)
            if self._halt.wait(0.02):
                return

    def growth(self) -> dict[str, float]:
        self._halt.set()
        self.join(5)
        return {k: (self.peak[k] - self.base[k]) / MIB for k in self.procs}


async def memory_run(url: str, token: str, language: str, mb: int) -> dict[str, Any]:
    async with HubClient(url, token, timeout=300) as client:
        wid = await new_workspace(client, f"mem-{language}")
        try:
            async with client.attach(wid) as att:
                await run_ok(att, "1", language)
                procs = agent_and_kernel(att.session_id, language)
                sampler = PeakRss(procs)
                sampler.start()
                got = hashlib.sha256()
                n_bytes = 0
                status = "?"
                t0 = time.perf_counter()
                try:
                    async for ev in att.execute(
                        flood_code(language, mb), language=language, timeout=300
                    ):  # type: ignore[arg-type]
                        if isinstance(ev, P.StreamEvent) and ev.name == "stdout":
                            b = ev.text.encode()
                            got.update(b)
                            n_bytes += len(b)
                        elif isinstance(ev, P.DoneEvent):
                            status = ev.status
                finally:
                    growth = sampler.growth()
                seconds = time.perf_counter() - t0
        finally:
            with contextlib.suppress(Exception):
                await client.stop_session(wid)
    return {
        "language": language,
        "mb": mb,
        "status": status,
        "seconds": seconds,
        "exact": (n_bytes, got.hexdigest()) == flood_sha256(mb),
        "growth_mib": growth,
        "found": sorted(procs),
    }


# ----------------------------------------------------------------------------- main


async def stop_session(url: str, token: str, wid: str) -> None:
    async with HubClient(url, token, timeout=60) as client:
        with contextlib.suppress(Exception):
            await client.stop_session(wid)


async def warm_workspaces(url: str, token: str, langs: list[str], reps: int) -> dict[str, str]:
    """A workspace per language and repetition, its session running that language (a page
    on a workspace that printed before would replay that first)."""
    out = {}
    async with HubClient(url, token, timeout=300) as client:
        for rep in range(reps):
            for lang in langs:
                wid = await new_workspace(client, f"stream-{lang}")
                async with client.attach(wid) as att:
                    await run_ok(att, "1", lang)
                out[f"{lang}{rep}"] = wid
    return out


def measure(args: argparse.Namespace, hubs: dict[str, Any], deadline: Deadline) -> dict:
    langs = args.langs.split(",")
    result: dict[str, Any] = {"browser": {}, "memory": {}}
    tokens = {name: hub.make_user("bench") for name, hub in hubs.items()}
    if not args.no_browser:
        from playwright.sync_api import sync_playwright

        chromium = shutil.which("chromium")
        if not chromium:
            raise SystemExit("Debian's chromium is needed (scripts/install.sh installs it)")
        result["chromium"] = chromium_version(chromium)
        wids = {
            name: asyncio.run(warm_workspaces(hub.url, tokens[name], langs, args.reps))
            for name, hub in hubs.items()
        }
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                ctxs = {n: new_context(browser, h.url, "bench", 0) for n, h in hubs.items()}
                for rep in range(args.reps):
                    for lang in langs:
                        for name, hub in hubs.items():  # interleaved: before, after, …
                            deadline.check(f"browser {name} {lang}")
                            max_s = 150.0 if name == "before" else 60.0
                            r = browser_run(ctxs[name], hub.url, wids[name][f"{lang}{rep}"], lang,
                                            args.lines, max_s)  # fmt: skip
                            r["load"] = os.getloadavg()
                            # a run that did not finish must not keep its kernel printing
                            # (in a thread: Playwright's sync API owns this thread's loop)
                            stopper = threading.Thread(
                                target=asyncio.run,
                                args=(
                                    stop_session(hub.url, tokens[name], wids[name][f"{lang}{rep}"]),
                                ),
                            )
                            stopper.start()
                            stopper.join(90)
                            print(f"  {name} {lang} #{rep + 1}: {r['seconds']} s, max frame "
                                  f"{r['max_frame_ms']:.0f} ms", flush=True)  # fmt: skip
                            result["browser"].setdefault(name, {}).setdefault(lang, []).append(r)
            finally:
                browser.close()
    for rep in range(args.reps):
        for lang in langs:
            mb = args.mb if lang == "python" else max(1, args.mb // 5)
            for name, hub in hubs.items():
                deadline.check(f"memory {name} {lang}")
                r = asyncio.run(memory_run(hub.url, tokens[name], lang, mb))
                r["load"] = os.getloadavg()
                print(f"  {name} {lang} {mb} MB #{rep + 1}: {r['growth_mib']}", flush=True)
                result["memory"].setdefault(name, []).append(r)
    return result


def main_run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = Deadline(args.budget)
    data: dict[str, Any] = {"lines": args.lines, "before": None, "load_before": os.getloadavg()}
    with contextlib.ExitStack() as stack:
        env = {"RSPARKHUB_SANDBOX": "none"} if args.before else None
        hubs: dict[str, Any] = {}
        if args.before:
            from isolation import before_env

            benv = stack.enter_context(before_env(args.before))
            hubs["before"] = stack.enter_context(running_hub(env, python=benv.python))
            data["before"] = benv.commit
        hubs["after"] = stack.enter_context(running_hub(env))
        data["sandbox"] = "none" if args.before else "default"
        data.update(measure(args, hubs, deadline))
    data["load_after"] = os.getloadavg()
    data["machine"] = machine_facts()
    return data


def _fmt_load(load: Any) -> str:
    return " ".join(f"{x:.1f}" for x in load)


def report(data: dict[str, Any]) -> str:
    parts: list[str] = []
    names = [n for n in ("before", "after") if n in data["browser"] or n in data["memory"]]
    label = {"before": f"before ({data['before']})", "after": "after (this checkout)"}
    n = data["lines"]
    if data["browser"]:
        parts.append(
            f"**{n:,} printed lines into the web console** ({data.get('chromium', 'Chromium')};"
            f" seconds from Enter until each slice of {SLICE:,} lines is on screen, its rate in"
            " lines/s; end to end = Enter → the last line shown; frames = rAF intervals until"
            " then; long tasks from a PerformanceObserver)\n"
        )
        langs = sorted({lang for name in names for lang in data["browser"].get(name, {})})
        for lang in langs:
            heads = ["slice"]
            cols: list[list[str]] = []
            for name in names:
                for i, r in enumerate(data["browser"].get(name, {}).get(lang, [])):
                    heads.append(f"{label[name]} run {i + 1}")
                    sl = r["slices_s"]
                    col = []
                    for k in range(n // SLICE):
                        if k < len(sl):
                            dt = sl[k] - (sl[k - 1] if k else 0.0)
                            rate = SLICE / dt if dt > 0 else float("inf")
                            col.append(f"{sl[k]:.2f} s ({rate:,.0f}/s)")
                        else:
                            col.append("—")
                    col.append(f"**{r['seconds']:.2f} s**" if r["complete"] else "**not done**")
                    col.append(f"{r['max_frame_ms']:.0f} ms ({r['frames_over_50']} > 50 ms)")
                    col.append(f"{r['longtasks']} (max {r['max_longtask_ms']:.0f} ms)")
                    col.append(_fmt_load(r["load"]))
                    cols.append(col)
            rows = []
            labels = [f"{(k + 1) * SLICE:,}" for k in range(n // SLICE)] + [
                "end to end",
                "max frame",
                "long tasks",
                "load (1/5/15) after",
            ]
            for i, lab in enumerate(labels):
                rows.append([lab] + [c[i] for c in cols])
            title = "R" if lang == "r" else "Python"
            parts.append(f"\n\n{title}: `{lines_code(lang, n)}`\n\n")
            parts.append(table(heads, rows))
    if data["memory"]:
        rows = []
        for name in names:
            for r in data["memory"].get(name, []):
                lang = r["language"]
                g = r["growth_mib"]
                rows.append(
                    [
                        label[name],
                        lang,
                        f"{r['mb']} MB",
                        r["status"],
                        "yes" if r["exact"] else "**NO**",
                        f"{r['seconds']:.2f} s",
                        f"+{g.get('agent', float('nan')):.0f} MiB",
                        f"+{g.get('kernel', float('nan')):.0f} MiB",
                        _fmt_load(r["load"]),
                    ]
                )
        parts.append(
            "\n\n**Session memory while printing** (Python client; peak RSS − RSS before, sampled"
            " every 20 ms; exact = byte count and SHA-256 of the whole stream)\n\n"
        )
        parts.append(
            table(
                ["code", "lang", "printed", "done", "exact?", "time", "agent", "kernel", "load"],
                rows,
            )
        )
    parts.append(
        f"\n\nLoad average before → after: {_fmt_load(data['load_before'])} → "
        f"{_fmt_load(data['load_after'])}; sandbox: {data['sandbox']}."
    )
    return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="also measure a hub running this git revision")
    ap.add_argument("--langs", default="r,python")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--mb", type=int, default=100, help="MB printed for the memory figure")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--budget", type=float, default=1200, help="seconds")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--flush", action="store_true", help="Python flushes every line")
    args = ap.parse_args()
    FLUSH["each"] = args.flush
    data = main_run(args)
    publish(data, report(data), args.json)


if __name__ == "__main__":
    main()
