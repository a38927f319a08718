"""Co-editing end to end: two and three browser windows (Debian's Chromium, each its own
context and user, offline-guarded) on one file of a real hub. Typing in one line at once
converges, the others' cursors show with their names, a dropped socket's offline edits
merge on reconnect, following a collaborator within a file and to the files they switch
to, a hub killed mid-typing loses nothing it passed on, a file rewritten
by code in the session (or saved over REST) merges into the text being edited, and a
viewer can neither type nor push an update with a hand-made message.

One hub for the module (the last two tests SIGKILL and restart it)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TypeVar

import httpx
import pytest
import websockets
from playwright.sync_api import Browser, Page, WebSocketRoute, expect
from pycrdt import Doc, Text

from browser import chromium
from conftest import HubProcess
from ide import (
    T_RUN,
    T_SESSION,
    console_idle,
    console_out,
    console_run,
    editor_content,
    editor_tab,
    ensure_workspace,
    file_item,
    hub_text,
    log_in,
    page_of,
    upload,
)

T = TypeVar("T")
USERS = ("alice", "bob", "dave", "carol")  # carol is a viewer, the others editors


@pytest.fixture(scope="module")
def tokens(shared_hub: HubProcess) -> dict[str, str]:
    return {u: shared_hub.make_user(u) for u in USERS}


@pytest.fixture(scope="module")
def alice_api(shared_hub: HubProcess, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    with shared_hub.client(tokens["alice"]) as c:
        yield c


@pytest.fixture(scope="module")
def ws(alice_api: httpx.Client) -> str:
    wid = ensure_workspace(alice_api, "coedit")
    for user, role in (("bob", "editor"), ("dave", "editor"), ("carol", "viewer")):
        alice_api.put(
            f"/api/workspaces/{wid}/members", json={"user": user, "role": role}
        ).raise_for_status()
    return wid


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def pages(browser: Browser, shared_hub: HubProcess) -> Iterator[Callable[[str], Page]]:
    """Logged-in pages, one browser context each, closed (and checked) after the test."""
    with ExitStack() as stack:

        def make(user: str) -> Page:
            page = stack.enter_context(page_of(browser))
            log_in(page, shared_hub, user)
            return page

        yield make


def open_doc(page: Page, hub: HubProcess, ws: str, path: str) -> None:
    """The workspace shown and ``path`` open, its document live."""
    page.bring_to_front()
    page.goto(f"{hub.url}/#/ws/{ws}")
    expect(page.get_by_test_id("connection-status")).to_have_attribute(
        "data-state", "open", timeout=30_000
    )
    file_item(page, path).click()
    expect(editor_tab(page, path)).to_have_attribute("aria-selected", "true")
    expect(editor_tab(page, path)).to_have_attribute("data-sync", "synced")


def doc_text(page: Page) -> str:
    """The visible editor's text, without the others' cursors (widgets with their names)."""
    return str(
        editor_content(page).evaluate(
            """el => [...el.querySelectorAll('.cm-line')].map(l => {
                 const c = l.cloneNode(true);
                 c.querySelectorAll('.cm-ySelectionCaret').forEach(x => x.remove());
                 return c.textContent;
               }).join('\\n')"""
        )
    )


def converge(pages: list[Page], timeout: float = 15) -> str:
    """Wait until every window shows the same text; return it."""
    deadline = time.monotonic() + timeout
    while True:
        texts = [doc_text(p) for p in pages]
        if len(set(texts)) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(set(texts)) == 1, texts
    return texts[0]


def end_of_line(page: Page, line: int) -> None:
    editor_content(page).focus()
    page.keyboard.press("Control+Home")
    for _ in range(line - 1):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("End")


def eventually(
    check: Callable[[], bool], timeout: float = 15, what: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what()}"
        time.sleep(0.1)


# --------------------------------------------------------------------------- tests


def test_three_windows_type_in_one_line(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    upload(alice_api, ws, "line.R", "x <- c()\n")
    windows = {u: pages(u) for u in ("alice", "bob", "dave")}
    for p in windows.values():
        open_doc(p, shared_hub, ws, "line.R")
        expect(editor_content(p)).to_contain_text("x <- c()")
    for p in windows.values():
        end_of_line(p, 1)
    # interleaved keystrokes, no waiting in between: the updates cross on the way
    for i in range(8):
        for user, p in windows.items():
            p.keyboard.insert_text(f" {user[0]}{i}")
    text = converge(list(windows.values()))
    first = text.split("\n")[0]
    for user in windows:
        for i in range(8):
            assert f" {user[0]}{i}" in first, (user, i, first)
    assert text.startswith("x <- c()")
    # each sees the others' cursors, labelled with their names
    carets = windows["alice"].locator(".cm-ySelectionInfo")
    expect(carets).to_have_count(2)
    assert sorted(carets.all_text_contents()) == ["bob", "dave"]
    # an explicit save makes the shared text a version, authored by who typed
    windows["bob"].bring_to_front()
    windows["bob"].get_by_test_id("save-button").click()
    eventually(lambda: hub_text(alice_api, ws, "line.R") == text, what=lambda: "saved text")
    author = alice_api.get(f"/api/workspaces/{ws}/history/line.R").json()[0]["author"]
    assert set(author.split(", ")) == {"alice", "bob", "dave"}, author
    for p in windows.values():
        expect(editor_tab(p, "line.R")).to_have_attribute("data-dirty", "false")
    # undo is per user: alice's undo takes back her typing (one burst), not the others'
    windows["alice"].bring_to_front()
    editor_content(windows["alice"]).focus()
    windows["alice"].keyboard.press("Control+z")
    undone = converge(list(windows.values()))
    assert all(f" b{i}" in undone and f" d{i}" in undone for i in range(8)), undone
    assert " a7" not in undone, undone


def test_viewer_is_read_only(
    pages: Callable[[str], Page],
    shared_hub: HubProcess,
    alice_api: httpx.Client,
    tokens: dict[str, str],
    ws: str,
) -> None:
    upload(alice_api, ws, "view.R", "shown <- TRUE\n")
    alice, carol = pages("alice"), pages("carol")
    open_doc(alice, shared_hub, ws, "view.R")
    open_doc(carol, shared_hub, ws, "view.R")
    # carol sees alice's typing live
    end_of_line(alice, 1)
    alice.keyboard.insert_text("  # live")
    expect(editor_content(carol)).to_contain_text("shown <- TRUE  # live")
    # her editor takes no keys
    expect(editor_content(carol)).to_have_attribute("contenteditable", "false")
    editor_content(carol).click()
    carol.keyboard.type("vandal")
    time.sleep(0.5)
    assert "vandal" not in converge([alice, carol])
    # a hand-made update on her own socket is refused and goes nowhere
    url = shared_hub.url.replace("http://", "ws://") + f"/api/workspaces/{ws}/doc/view.R"
    answer = off_loop(_push_update(url, tokens["carol"], "vandal "))
    assert answer["type"] == "error" and answer["code"] == "read_only", answer
    time.sleep(0.5)
    assert "vandal" not in doc_text(alice)
    # a non-member cannot open it at all
    outsider = shared_hub.make_user("mallory")
    assert off_loop(_refusal(url, outsider)) == 4404


def off_loop(coro: Coroutine[object, object, T]) -> T:
    """Run ``coro`` on an event loop of its own (Playwright's sync API holds this thread's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=60)


async def _push_update(url: str, token: str, insert: str) -> dict[str, object]:
    """Sync like a browser, then send an update inserting ``insert``; the hub's answer."""
    from rsparkhub.hub.collab import wire

    doc: Doc[Text] = Doc()
    text = doc.get("content", type=Text)
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as sock:
        await sock.send(wire.sync(wire.STEP1, doc.get_state()))
        while True:
            frame = await asyncio.wait_for(sock.recv(), 10)
            if isinstance(frame, bytes):
                msg = wire.parse(frame)
                if msg.kind == wire.SYNC and msg.step == wire.STEP2:
                    doc.apply_update(msg.payload)
                    break
        before = doc.get_state()
        text.insert(0, insert)
        await sock.send(wire.sync(wire.UPDATE, doc.get_update(before)))
        while True:
            frame = await asyncio.wait_for(sock.recv(), 10)
            if isinstance(frame, str) and json.loads(frame)["type"] == "error":
                return dict(json.loads(frame))


async def _refusal(url: str, token: str) -> int | None:
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as sock:
        try:
            await asyncio.wait_for(sock.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
    return None


def test_reconnect_merges_offline_edits(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    upload(alice_api, ws, "offline.R", "one\ntwo\n")
    alice, bob = pages("alice"), pages("bob")
    cut = {"on": False}
    routes: list[WebSocketRoute] = []

    def through(route: WebSocketRoute) -> None:
        if cut["on"]:
            route.close()  # the hub is out of reach: refused again until the cut ends
            return
        routes.append(route)
        route.connect_to_server()

    bob.context.route_web_socket(re.compile(r"/doc/"), through)
    open_doc(alice, shared_hub, ws, "offline.R")
    open_doc(bob, shared_hub, ws, "offline.R")
    cut["on"] = True
    for r in routes:
        r.close()
    expect(editor_tab(bob, "offline.R")).to_have_attribute("data-sync", "offline")
    end_of_line(bob, 1)
    bob.keyboard.insert_text(" (bob offline)")
    end_of_line(alice, 2)
    alice.keyboard.insert_text(" (alice online)")
    time.sleep(1)
    assert "bob offline" not in doc_text(alice)
    started = time.monotonic()
    cut["on"] = False
    expect(editor_tab(bob, "offline.R")).to_have_attribute("data-sync", "synced", timeout=15_000)
    text = converge([alice, bob])
    assert text == "one (bob offline)\ntwo (alice online)\n", text
    assert time.monotonic() - started < 10


def test_file_rewritten_by_code_merges(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    upload(alice_api, ws, "merge.R", "a <- 1\nb <- 2\n")
    alice = pages("alice")
    open_doc(alice, shared_hub, ws, "merge.R")
    expect(alice.get_by_test_id("session-status")).to_have_attribute(
        "data-state", "running", timeout=T_SESSION
    )
    end_of_line(alice, 1)
    alice.keyboard.insert_text("  # mine")
    # a version point after 2 s idle: the session's copy has alice's edit …
    expect(editor_tab(alice, "merge.R")).to_have_attribute("data-dirty", "false")
    # … then code in the session rewrites the file (as it reads it) while alice goes on
    # typing: her new edit is in no version yet when the code's file arrives; both are kept
    console_run(
        alice,
        'Sys.sleep(0.3); writeLines(c(sub("b <- 2", "b <- 2  # code", readLines("merge.R")),'
        ' "c <- 3"), "merge.R")',
    )
    end_of_line(alice, 1)
    alice.keyboard.insert_text(" # more")
    console_idle(alice, T_RUN)
    expected = "a <- 1  # mine # more\nb <- 2  # code\nc <- 3\n"
    eventually(
        lambda: doc_text(alice) == expected,
        what=lambda: f"{doc_text(alice)!r}, hub {hub_text(alice_api, ws, 'merge.R')!r}",
    )
    # a REST save (another client) merges the same way
    version = alice_api.get(f"/api/workspaces/{ws}/text/merge.R").json()["version"]
    current = hub_text(alice_api, ws, "merge.R")
    alice_api.put(
        f"/api/workspaces/{ws}/text/merge.R",
        json={"content": current.replace("b <- 2 ", "b <- 20 "), "base_version": version},
    ).raise_for_status()
    expected = expected.replace("b <- 2 ", "b <- 20 ")
    eventually(lambda: doc_text(alice) == expected, what=lambda: doc_text(alice))
    eventually(lambda: hub_text(alice_api, ws, "merge.R") == expected, what=lambda: "idle version")
    assert alice.get_by_test_id("conflict-dialog").count() == 0


def test_a_version_point_while_code_rewrites_the_file(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    """The race of a session's write with a version point, forced: code rewrites the file
    at once and keeps running (so no scan sends it yet); meanwhile alice types and saves, a
    version point the session gets before the code's write has left it. The session keeps
    the code's write (the put does not overwrite it), the hub merges it against what the
    code overwrote (not the version point), and both edits stay."""
    upload(alice_api, ws, "race.R", "a <- 1\n")
    alice = pages("alice")
    open_doc(alice, shared_hub, ws, "race.R")
    expect(alice.get_by_test_id("session-status")).to_have_attribute(
        "data-state", "running", timeout=T_SESSION
    )
    console_run(alice, 'writeLines(c(readLines("race.R"), "c <- 3"), "race.R"); Sys.sleep(6)')
    time.sleep(2)  # the code has written; it sleeps on, unscanned
    end_of_line(alice, 1)
    alice.keyboard.insert_text("  # mine")
    alice.keyboard.press("Control+s")
    expect(editor_tab(alice, "race.R")).to_have_attribute("data-dirty", "false")
    console_idle(alice, T_RUN)
    expected = "a <- 1  # mine\nc <- 3\n"
    eventually(
        lambda: doc_text(alice) == expected,
        what=lambda: f"{doc_text(alice)!r}, hub {hub_text(alice_api, ws, 'race.R')!r}",
    )
    eventually(
        lambda: hub_text(alice_api, ws, "race.R") == expected,
        what=lambda: hub_text(alice_api, ws, "race.R"),
    )
    # and the session's copy is the same again
    console_run(alice, 'cat(readLines("race.R"), sep = "|")')
    console_idle(alice, T_RUN)
    expect(console_out(alice)).to_contain_text("a <- 1  # mine|c <- 3")


def test_follow_a_collaborator(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    upload(alice_api, ws, "long.R", "".join(f"x{i} <- {i}\n" for i in range(400)))
    alice, bob = pages("alice"), pages("bob")
    open_doc(alice, shared_hub, ws, "long.R")
    open_doc(bob, shared_hub, ws, "long.R")
    editor_content(bob).focus()  # a cursor is shared while the editor has the focus
    follow = alice.get_by_test_id("follow-select")
    expect(follow.locator("option[value=bob]")).to_have_count(1)
    follow.select_option("bob")
    scroller = alice.locator("[data-testid=editor] .editor-view:not([hidden]) .cm-scroller")
    assert scroller.evaluate("el => el.scrollTop") == 0
    bob.bring_to_front()
    editor_content(bob).focus()
    bob.keyboard.press("Control+End")
    bob.keyboard.insert_text("# bob is here")
    # alice's editor scrolled to bob's cursor: the end of the file is on her screen
    expect(editor_content(alice)).to_contain_text("# bob is here")
    assert scroller.evaluate("el => el.scrollTop") > 2000


def test_follow_across_files(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    """Following bob opens the file bob switches to and scrolls with his cursor there;
    choosing another file herself ends alice's following."""
    upload(alice_api, ws, "start.R", "start <- 1\n")
    upload(alice_api, ws, "far.R", "".join(f"y{i} <- {i}\n" for i in range(400)))
    alice, bob = pages("alice"), pages("bob")
    open_doc(alice, shared_hub, ws, "start.R")
    open_doc(bob, shared_hub, ws, "start.R")
    follow = alice.get_by_test_id("follow-select")
    expect(follow.locator("option[value=bob]")).to_contain_text("start.R")
    follow.select_option("bob")

    # bob opens another file (alice has never opened it) and types at its end
    bob.bring_to_front()
    file_item(bob, "far.R").click()
    expect(editor_tab(bob, "far.R")).to_have_attribute("data-sync", "synced")
    editor_content(bob).focus()
    bob.keyboard.press("Control+End")
    bob.keyboard.insert_text("# bob went far")
    expect(editor_tab(alice, "far.R")).to_have_attribute("aria-selected", "true")
    expect(follow).to_have_attribute("data-following", "bob")
    expect(editor_content(alice)).to_contain_text("# bob went far")
    scroller = alice.locator("[data-testid=editor] .editor-view:not([hidden]) .cm-scroller")
    eventually(lambda: scroller.evaluate("el => el.scrollTop") > 2000, what=lambda: "scrolled")

    # bob goes back: so does alice, still following
    editor_tab(bob, "start.R").click()
    expect(editor_tab(alice, "start.R")).to_have_attribute("aria-selected", "true")
    expect(follow).to_have_attribute("data-following", "bob")
    editor_tab(bob, "far.R").click()
    expect(editor_tab(alice, "far.R")).to_have_attribute("aria-selected", "true")

    # alice picks a file herself: she stops following, and bob's next switch leaves her be
    alice.bring_to_front()
    editor_tab(alice, "start.R").click()
    expect(follow).to_have_attribute("data-following", "")
    editor_tab(bob, "start.R").click()
    editor_tab(bob, "far.R").click()
    expect(bob.get_by_test_id("follow-select").locator("option[value=alice]")).to_contain_text(
        "start.R"
    )
    expect(editor_tab(alice, "start.R")).to_have_attribute("aria-selected", "true")

    # following bob again, until he leaves the workspace (a grace of 8 s for a reconnect)
    follow.select_option("bob")
    expect(editor_tab(alice, "far.R")).to_have_attribute("aria-selected", "true")
    bob.goto("about:blank")
    expect(alice.locator(".toasts")).to_contain_text("bob left the workspace", timeout=20_000)
    expect(follow).to_have_count(0)  # nobody else is here to follow


def test_hub_killed_mid_typing_loses_nothing_it_passed_on(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    """Runs last: it restarts the module's hub."""
    upload(alice_api, ws, "kill.R", "start\n")
    alice, bob = pages("alice"), pages("bob")
    open_doc(alice, shared_hub, ws, "kill.R")
    open_doc(bob, shared_hub, ws, "kill.R")
    end_of_line(alice, 1)
    typed = ""
    for i in range(30):
        word = f" w{i}"
        alice.keyboard.insert_text(word)
        typed += word
        if i == 20:
            seen = doc_text(bob)  # reached bob: the hub had logged it
            shared_hub.stop(signal.SIGKILL)
    assert seen.startswith("start w0"), seen
    shared_hub.start()
    # a window opened after the restart has everything bob had seen
    carol = pages("carol")
    open_doc(carol, shared_hub, ws, "kill.R")
    assert doc_text(carol).startswith(seen.rstrip("\n")), (doc_text(carol), seen)
    # and alice's window, reconnected, brings the words typed while the hub was down
    text = converge([alice, bob, carol], timeout=30)
    assert text == "start" + typed + "\n", text


def test_a_hub_that_lost_the_document_does_not_double_the_text(
    pages: Callable[[str], Page], shared_hub: HubProcess, alice_api: httpx.Client, ws: str
) -> None:
    """The hub's update logs are gone (restored from a backup, say): a window still holding
    the old history reopens the file instead of sending that history (which would double
    the text). Restarts the module's hub."""
    upload(alice_api, ws, "lost.R", "keep <- 1\n")
    alice = pages("alice")
    open_doc(alice, shared_hub, ws, "lost.R")
    shared_hub.stop(signal.SIGKILL)
    shutil.rmtree(shared_hub.data_dir / "collab")
    shared_hub.start()
    expect(editor_tab(alice, "lost.R")).to_have_attribute("data-sync", "synced", timeout=30_000)
    eventually(lambda: doc_text(alice) == "keep <- 1\n", what=lambda: doc_text(alice))
    end_of_line(alice, 1)
    alice.keyboard.insert_text("  # after")
    eventually(
        lambda: hub_text(alice_api, ws, "lost.R") == "keep <- 1  # after\n",
        what=lambda: hub_text(alice_api, ws, "lost.R"),
    )
