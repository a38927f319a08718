"""Co-editing (hub/collab/): what a shared document costs the hub and how fast an edit
travels. Clients are pycrdt docs speaking the document socket's messages (y-protocols
sync, the same frames the browser's Yjs sends), so the figures are the hub's part; a
browser adds its own rendering (~1 frame).

Measured, against a fresh hub (``bench/_hub.py``):

1. Edit → other window: two sockets on one file; one sends a one-character update, the
   time until the other receives it (the hub applies it, appends it to the log, relays it).
   ``--edits`` times, one after the other.
2. Hub memory per open document: RSS of the hub process before and after opening ``--docs``
   files of ``--doc-kb`` KB (one socket each), per document; then one 1 MB file with 10
   sockets taking ``--big-edits`` edits in turn (spread over the file): RSS growth and the
   update log's size (compacted along the way).
3. Reconnect catch-up: a socket goes away, the others make ``--missed`` edits, it comes back
   with its old state: time from connecting until its text equals the hub's.
4. In Chromium (two browser contexts, two users, the web IDE): ``--browser-edits`` times a
   word typed in one window; from the moment its own editor shows it (a MutationObserver on
   the editor) to the moment the other window's editor shows it, on one clock.

Prints a table; ``--record`` appends the run to bench/RESULTS.md §10."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import websockets
from pycrdt import Doc, Text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hub import fmt_ms, machine_facts, mib, record_section, running_hub, stats, table  # noqa: E402

from rsparkhub.hub.collab import wire  # noqa: E402


class Client:
    """One editor: a pycrdt doc and its document socket."""

    def __init__(self, url: str, token: str, doc: Doc[Text] | None = None) -> None:
        self.url, self.token = url, token
        self.doc: Doc[Text] = doc if doc is not None else Doc()
        self.text = self.doc.get("content", type=Text)
        self.sock: Any = None
        self.got: asyncio.Queue[bytes] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        self.sock = await websockets.connect(
            self.url, additional_headers=headers, open_timeout=30, max_size=2**26
        )
        await self.sock.send(wire.sync(wire.STEP1, self.doc.get_state()))
        while True:  # until the hub's step 2: synced
            frame = await asyncio.wait_for(self.sock.recv(), 60)
            if isinstance(frame, bytes):
                msg = wire.parse(frame)
                if msg.kind == wire.SYNC and msg.step == wire.STEP1:
                    await self.sock.send(wire.sync(wire.STEP2, self.doc.get_update(msg.payload)))
                elif msg.kind == wire.SYNC:
                    self.doc.apply_update(msg.payload)
                    if msg.step == wire.STEP2:
                        break
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.sock:
                if isinstance(frame, bytes):
                    msg = wire.parse(frame)
                    if msg.kind == wire.SYNC and msg.step != wire.STEP1:
                        self.doc.apply_update(msg.payload)
                        self.got.put_nowait(msg.payload)
        except websockets.ConnectionClosed:
            pass

    async def insert(self, at_char: int, s: str) -> None:
        before = self.doc.get_state()
        current = str(self.text)
        self.text.insert(len(current[:at_char].encode()), s)
        await self.sock.send(wire.sync(wire.UPDATE, self.doc.get_update(before)))

    async def close(self) -> None:
        await self.sock.close()
        if self._reader:
            await self._reader


def setup(hub: Any, files: dict[str, str]) -> tuple[str, str]:
    token = hub.make_user("bench")
    with hub.client(token) as c:
        pid = c.post("/api/projects", json={"name": "coedit"}).json()["id"]
        wid = c.post(f"/api/projects/{pid}/workspaces", json={"name": "coedit"}).json()["id"]
        for path, content in files.items():
            c.put(
                f"/api/workspaces/{wid}/text/{path}", json={"content": content, "base_version": 0}
            ).raise_for_status()
    return token, wid


def doc_url(hub: Any, wid: str, path: str) -> str:
    return hub.url.replace("http://", "ws://") + f"/api/workspaces/{wid}/doc/{path}"


def rss(hub: Any) -> int:
    return int(psutil.Process(hub.proc.pid).memory_info().rss)


async def latency(url: str, token: str, n: int) -> list[float]:
    a, b = Client(url, token), Client(url, token)
    await a.connect()
    await b.connect()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await a.insert(i, "x")
        await asyncio.wait_for(b.got.get(), 10)
        out.append(time.perf_counter() - t0)
    await a.close()
    await b.close()
    return out


async def memory(hub: Any, token: str, wid: str, docs: int, big_edits: int) -> dict[str, Any]:
    base = rss(hub)
    clients = [Client(doc_url(hub, wid, f"doc{i}.R"), token) for i in range(docs)]
    for c in clients:
        await c.connect()
    await asyncio.sleep(0.5)
    per_doc = (rss(hub) - base) / docs
    for c in clients:
        await c.close()
    before = rss(hub)
    big = [Client(doc_url(hub, wid, "big.R"), token) for _ in range(10)]
    for c in big:
        await c.connect()
    rnd = random.Random(1)
    t0 = time.perf_counter()
    for i in range(big_edits):
        c = big[i % 10]
        await c.insert(rnd.randrange(len(str(c.text))), f"e{i % 10}")
        if i % 100 == 99:  # let the others catch up now and then
            await asyncio.sleep(0.01)
    # every socket converged
    deadline = time.monotonic() + 60
    while len({str(c.text) for c in big}) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    took = time.perf_counter() - t0
    grown = rss(hub) - before
    log_size = sum(p.stat().st_size for p in (hub.data_dir / "collab" / wid).glob("*.ylog"))
    for c in big:
        await c.close()
    return {"per_doc": per_doc, "big_grown": grown, "big_s": took, "logs": log_size}


async def catch_up(url: str, token: str, missed: int) -> float:
    a, b, witness = Client(url, token), Client(url, token), Client(url, token)
    for c in (a, b, witness):
        await c.connect()
    await b.close()
    for i in range(missed):
        await a.insert(i, "y")
    # the hub has them all: a socket that stayed shows them
    deadline = time.monotonic() + 60
    while str(witness.text) != str(a.text) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    again = Client(url, token, b.doc)
    t0 = time.perf_counter()
    await again.connect()
    while str(again.text) != str(a.text) and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    took = time.perf_counter() - t0
    assert str(again.text) == str(a.text)
    for c in (again, a, witness):
        await c.close()
    return took


_WATCH = """(token) => {
  window.__seen = null;
  const el = document.querySelector('[data-testid=editor] .editor-view:not([hidden]) .cm-content');
  const check = () => {
    if (window.__seen === null && el.textContent.includes(token)) {
      window.__seen = performance.timeOrigin + performance.now();
      obs.disconnect();
    }
  };
  const obs = new MutationObserver(check);
  obs.observe(el, {subtree: true, childList: true, characterData: true});
  check();
}"""


def browser_latency(hub: Any, token: str, wid: str, n: int) -> list[float]:
    from browser import chromium
    from ide import log_in

    hub.make_user("bench2")
    with hub.client(token) as c:
        c.put(
            f"/api/workspaces/{wid}/members", json={"user": "bench2", "role": "editor"}
        ).raise_for_status()
    out: list[float] = []
    with chromium() as browser:
        pages = []
        for user in ("bench", "bench2"):
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            page.set_default_timeout(30_000)
            log_in(page, hub, user)
            page.goto(f"{hub.url}/#/ws/{wid}")
            page.locator('[data-testid=file-item][data-path="lat2.R"]').click()
            page.locator(
                '[data-testid=editor-tab][data-path="lat2.R"][data-sync=synced]'
            ).wait_for()
            pages.append(page)
        a, b = pages
        a.locator("[data-testid=editor] .cm-content").focus()
        a.keyboard.press("Control+End")
        for i in range(n):
            word = f"t{i}x"
            for p in (a, b):
                p.evaluate(_WATCH, word)
            a.keyboard.insert_text(f" {word}")
            b.wait_for_function("() => window.__seen !== null", timeout=10_000)
            out.append((b.evaluate("window.__seen") - a.evaluate("window.__seen")) / 1000)
    return out


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    files = {
        "lat.R": "x <- 1\n",
        "lat2.R": "x <- 1\n",
        "big.R": ("y <- rnorm(100)  # " + "z" * 60 + "\n") * 12_500,
    }
    files |= {f"doc{i}.R": ("# line\n" * (args.doc_kb * 1024 // 7)) for i in range(args.docs)}
    with running_hub() as hub:
        token, wid = setup(hub, files)
        lat = asyncio.run(latency(doc_url(hub, wid, "lat.R"), token, args.edits))
        mem = asyncio.run(memory(hub, token, wid, args.docs, args.big_edits))
        catch = [
            asyncio.run(catch_up(doc_url(hub, wid, "lat.R"), token, args.missed)) for _ in range(3)
        ]
        in_browser = browser_latency(hub, token, wid, args.browser_edits)
    return {
        "latency": stats(lat),
        "memory": mem,
        "catch_up": stats(catch),
        "browser": stats(in_browser),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edits", type=int, default=300)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--doc-kb", type=int, default=100)
    ap.add_argument("--big-edits", type=int, default=2000)
    ap.add_argument("--missed", type=int, default=1000)
    ap.add_argument("--browser-edits", type=int, default=50)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    args = ap.parse_args()
    load_before = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
    started = time.monotonic()
    runs = [one_run(args) for _ in range(args.runs)]
    rows = []
    for i, r in enumerate(runs, 1):
        lat, mem, cu, br = r["latency"], r["memory"], r["catch_up"], r["browser"]
        rows.append(
            [
                i,
                f"{fmt_ms(lat['median'])} / {fmt_ms(lat['p95'])} / {fmt_ms(lat['max'])}",
                f"{fmt_ms(br['median'])} / {fmt_ms(br['p95'])} / {fmt_ms(br['max'])}",
                mib(mem["per_doc"]),
                f"{mib(mem['big_grown'])} in {mem['big_s']:.1f} s",
                mib(mem["logs"]),
                f"{fmt_ms(cu['median'])} ({fmt_ms(cu['min'])}–{fmt_ms(cu['max'])})",
            ]
        )
    lats = [r["latency"]["median"] for r in runs]
    in_browser = [r["browser"]["median"] for r in runs]
    text = (
        f"{args.edits} edits one after the other; {args.docs} files of {args.doc_kb} KB open "
        f"(one socket each); one 1 MB file with 10 sockets taking {args.big_edits} edits in "
        f"turn; catch-up after {args.missed} missed edits (3 times per run); "
        f"{args.browser_edits} words typed in Chromium. {len(runs)} runs "
        f"on fresh hubs; spread of the median edit latency between runs: "
        f"{fmt_ms(min(lats))}–{fmt_ms(max(lats))} (sockets), "
        f"{fmt_ms(min(in_browser))}–{fmt_ms(max(in_browser))} (Chromium).\n\n"
        + table(
            [
                "run",
                "edit → other socket (median / p95 / max)",
                "edit → other Chromium window (median / p95 / max)",
                "hub RSS per open doc",
                "1 MB doc, 10 sockets: RSS growth",
                "update logs after",
                "reconnect catch-up (median, range)",
            ],
            rows,
        )
        + "\n\n'Other socket' is the hub's part (pycrdt clients on loopback); 'other Chromium"
        " window' is what a user sees: typed in one window, drawn in the other (two browser"
        " contexts of one headless Chromium on this machine). The RSS growth of the 1 MB document is the loaded"
        " room: its CRDT (per-item metadata) and its base state; a room is dropped 30 s after"
        " its last socket closes. Not measured here: whether the allocator hands that memory"
        " back to the system."
    )
    print(text)
    if args.record:
        load_after = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
        record_section(
            "10. Co-editing (`bench/coedit.py`)",
            "bench/coedit.py",
            text,
            machine_facts(),
            time.monotonic() - started,
            (load_before, load_after),
        )


if __name__ == "__main__":
    main()
