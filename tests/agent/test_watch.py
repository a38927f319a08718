"""The working directory's inotify watch (agent/watch.py) on real directories: every kind
of change the walk would find makes it say "walk", nothing else does, and a lost queue or
a long quiet spell never lets a change be skipped. Plus ``FileSync``: after an execution
that changed nothing the tree is not walked, and a change is still sent."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from test_filesync import linked_sync, write

from rsparkhub import protocol as P
from rsparkhub.agent.watch import Watch
from rsparkhub.agent.workdir import Workdir, walks_into


def _watch(root: Path, max_quiet_s: float = 30.0) -> Watch:
    w = Watch(root, walks_into, max_quiet_s)
    assert w.active
    assert not w.quiet()  # never walked yet
    w.walked()
    assert w.quiet()
    return w


def _changed(w: Watch) -> bool:
    """One look: True (walk) or False (quiet); after a walk the view is current again."""
    quiet = w.quiet()
    if not quiet:
        w.walked()
    return not quiet


def test_every_change_the_walk_finds_is_seen(tmp_path: Path) -> None:
    (tmp_path / "data" / "deep").mkdir(parents=True)
    (tmp_path / "data" / "deep" / "a.csv").write_text("1\n")
    w = _watch(tmp_path)
    steps = {
        "write in a subdirectory": lambda: (tmp_path / "data" / "deep" / "a.csv").write_text("2"),
        "create at the top": lambda: (tmp_path / "new.R").write_text("x <- 1\n"),
        "rename": lambda: (tmp_path / "new.R").rename(tmp_path / "data" / "moved.R"),
        "delete": lambda: (tmp_path / "data" / "moved.R").unlink(),
        "mtime only": lambda: os.utime(tmp_path / "data" / "deep" / "a.csv", (1, 1)),
        "new directory": lambda: (tmp_path / "fresh").mkdir(),
        # the directory just made is watched too
        "write in the new directory": lambda: (tmp_path / "fresh" / "b.txt").write_text("b"),
        "remove a directory": lambda: (
            (tmp_path / "fresh" / "b.txt").unlink(),
            (tmp_path / "fresh").rmdir(),
        ),  # fmt: skip
    }
    for what, step in steps.items():
        assert not _changed(w), f"quiet before: {what}"
        step()
        assert _changed(w), what
    # a directory moved in from outside the tree, with files already inside it
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "c.txt").write_text("c")
    outside.rename(tmp_path / "arrived")
    assert _changed(w)
    (tmp_path / "arrived" / "inner" / "c.txt").write_text("changed")
    assert _changed(w), "a moved-in directory's subdirectories are watched"
    w.close()


def test_what_the_walk_skips_is_not_a_change(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "f.txt").write_text("kept")
    w = _watch(tmp_path)
    (tmp_path / ".git" / "index").write_text("x")
    (tmp_path / "__pycache__" / "m.pyc").write_bytes(b"x")
    assert (tmp_path / "f.txt").read_text() == "kept"  # reading changes nothing
    assert w.quiet()
    w.close()


def test_a_lost_queue_and_a_long_quiet_spell_mean_walk(tmp_path: Path) -> None:
    max_events = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    w = _watch(tmp_path)
    many = tmp_path / "many"
    many.mkdir()
    assert _changed(w)
    # more events than the kernel queues: IN_Q_OVERFLOW, and the watches are made again
    for i in range(max_events // 2 + 100):
        (many / f"f{i}").write_bytes(b"")  # IN_CREATE + IN_CLOSE_WRITE each
    assert _changed(w)
    assert w.active
    (many / "f0").write_text("after the overflow")
    assert _changed(w), "still watched after the overflow"
    # mmap writes are not reported: a walk at least every max_quiet_s
    short = _watch(tmp_path / "many", max_quiet_s=0.2)
    time.sleep(0.3)
    assert not short.quiet()
    w.close()
    short.close()


def test_a_missing_or_replaced_root_means_walk(tmp_path: Path) -> None:
    assert not Watch(tmp_path / "not-yet", walks_into).active  # nothing to watch: walk
    root = tmp_path / "work"
    root.mkdir()
    w = _watch(root)
    root.rename(tmp_path / "old")  # the tree's directory replaced by another one
    root.mkdir()
    assert _changed(w)
    (root / "f.txt").write_text("in the new directory")
    assert _changed(w) or not w.active, "the new root is watched, or the walk is kept"
    w.close()


def test_filesync_walks_only_after_a_change(tmp_path: Path) -> None:
    async def go() -> None:
        write(tmp_path, "big/0.csv", b"0")
        link = await linked_sync(tmp_path)
        walks = 0
        real_scan = link.wd.scan

        def counting_scan(*args: object, **kwargs: object) -> object:
            nonlocal walks
            walks += 1
            return real_scan(*args, **kwargs)  # type: ignore[arg-type]

        link.wd.scan = counting_scan  # type: ignore[method-assign]
        await link.files.scan_and_send()  # the first look walks
        assert walks == 1 and link.sent == []
        for _ in range(3):  # executions that changed nothing: no walk
            await link.files.scan_and_send()
        assert walks == 1
        write(tmp_path, "big/1.csv", b"1")
        await link.files.scan_and_send()
        assert walks == 2
        [msg] = link.sent
        assert isinstance(msg, P.FileFromAgent) and msg.path == "big/1.csv"
        await link.files.acked(P.FileAck(fseq=msg.fseq, ok=True))
        await link.files.scan_and_send()
        assert walks == 2, "an ack changes nothing in the tree"
        # the link drops: what was unsent is looked for again
        link.files.disconnected()
        await link.files.connected(link.send)
        await link.files.scan_and_send()
        assert walks == 3

    asyncio.run(go())


def test_workdir_walk_and_watch_agree_on_what_is_entered(tmp_path: Path) -> None:
    for d in (".hidden", "__pycache__", "kept"):
        write(tmp_path, f"{d}/f.txt", b"x")
    changes, _ = Workdir(tmp_path).scan({})
    assert [c.path for c in changes] == ["kept/f.txt"]
    assert [walks_into(d) for d in (".hidden", "__pycache__", "kept")] == [False, False, True]
