"""Unit tests of the agent's outbox (seq, coalescing, acks, backpressure) and workdir
(atomic puts, path containment, change scanning) — no kernels, no sockets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rsparkhub import protocol as P
from rsparkhub.agent.modes import split_bash
from rsparkhub.agent.outbox import Outbox
from rsparkhub.agent.workdir import PathOutsideWorkdir, Workdir, sha256_bytes


async def test_seq_coalescing_and_batches() -> None:
    ob = Outbox("s", coalesce_cap=10)
    assert ob.first_unacked_seq == 1
    assert ob.emit(P.StreamEvent(request_id="r", name="stdout", text="abc")) == 1
    assert ob.emit(P.StreamEvent(request_id="r", name="stdout", text="def")) == 1
    assert ob.emit(P.StreamEvent(request_id="r", name="stderr", text="x")) == 2
    assert ob.emit(P.StreamEvent(request_id="r", name="stderr", text="y" * 25)) == 5  # split
    assert ob.emit(P.DoneEvent(request_id="r", status="ok")) == 6
    batch = ob.take_batch()
    assert [e.seq for e in batch] == [1, 2, 3, 4, 5, 6]
    assert batch[0].event.text == "abcdef"
    assert [len(e.event.text) for e in batch[1:5]] == [1, 10, 10, 5]
    # sent events are never merged into
    assert ob.emit(P.StreamEvent(request_id="r", name="stdout", text="z")) == 7
    assert [e.seq for e in ob.take_batch()] == [7]
    assert ob.take_batch() == []
    ob.ack(4)
    assert ob.first_unacked_seq == 5 and len(ob) == 3
    ob.rewind(5)  # a re-dial: the hub had up to 5
    assert [e.seq for e in ob.take_batch()] == [6, 7]
    ob.ack(7)
    assert len(ob) == 0 and ob.first_unacked_seq == 8


async def test_acks_past_the_last_seq_do_not_swallow_later_events() -> None:
    """Found by the link fuzzer: an ``ack`` (or a welcome's ``acked_seq``) beyond anything
    the agent sent made every later event count as sent, so replies never went out."""
    ob = Outbox("s")
    ob.emit(P.DoneEvent(request_id="a", status="ok"))
    assert [e.seq for e in ob.take_batch()] == [1]
    ob.ack(799)
    assert ob.acked_seq == 1 and len(ob) == 0
    assert ob.emit(P.DoneEvent(request_id="b", status="ok")) == 2
    assert [e.seq for e in ob.take_batch()] == [2]
    ob.rewind(5000)
    assert ob.acked_seq == 2
    assert ob.emit(P.DoneEvent(request_id="c", status="ok")) == 3
    assert [e.seq for e in ob.take_batch()] == [3]


async def test_backpressure_waits_for_acks() -> None:
    ob = Outbox("s", max_unacked_bytes=1000)
    ob.emit(P.StreamEvent(request_id="r", name="stdout", text="x" * 2000))
    waiter = asyncio.create_task(ob.wait_for_room())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    ob.take_batch()
    ob.ack(ob.last_seq)
    await asyncio.wait_for(waiter, 1)
    assert ob.unacked_bytes == 0


def test_workdir_put_scan_delete(tmp_path: Path) -> None:
    wd = Workdir(tmp_path, max_file_bytes=100)
    wd.put("a/b.txt", b"hello", sha256_bytes(b"hello"))
    assert (tmp_path / "a/b.txt").read_bytes() == b"hello"
    assert wd.scan() == ([], [])  # puts are not echoed
    (tmp_path / "new.csv").write_text("1,2\n")
    (tmp_path / "big.bin").write_bytes(b"0" * 200)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden/x").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__/m.pyc").write_text("x")
    os.symlink(tmp_path / "new.csv", tmp_path / "link.csv")
    changes, deleted = wd.scan()
    assert [c.path for c in changes] == ["new.csv"] and deleted == []
    wd.commit_changes(changes)
    assert wd.scan() == ([], [])
    # touched with the same content: reported by scan, recognised as not new
    os.utime(tmp_path / "new.csv", ns=(1, 1))
    changes, _ = wd.scan()
    assert changes and not wd.is_new_content(changes[0])
    (tmp_path / "a/b.txt").unlink()
    _, deleted = wd.scan()
    assert deleted == ["a/b.txt"]
    wd.delete("new.csv")
    assert not (tmp_path / "new.csv").exists()


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "."])
def test_workdir_refuses_escapes(tmp_path: Path, bad: str) -> None:
    wd = Workdir(tmp_path / "w")
    (tmp_path / "w").mkdir()
    with pytest.raises(PathOutsideWorkdir):
        wd.put(bad, b"x", sha256_bytes(b"x"))


def test_workdir_refuses_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "w/link")
    wd = Workdir(tmp_path / "w")
    with pytest.raises(PathOutsideWorkdir):
        wd.put("link/x", b"x", sha256_bytes(b"x"))


def test_split_bash() -> None:
    script = (
        "echo a\n\n# c\nif true; then\n  echo b\nfi\necho 'x\ny'\ncat <<EOF\nz\nEOF\nls \\\n  -l\n"
    )
    assert split_bash(script) == [
        "echo a",
        "if true; then\n  echo b\nfi",
        "echo 'x\ny'",
        "cat <<EOF\nz\nEOF",
        "ls \\\n  -l",
    ]
