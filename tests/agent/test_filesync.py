"""Files written by code are acknowledged like events, and a re-dial resyncs from the hub's
manifest.

``plan_resync`` (the decision) and ``FileSync`` (what is in flight, acks, refusals) are
tested on real files in a temporary directory. ``FileSync``'s sender here is a list that
keeps what would go over the socket: it stands for the hub link, which is tested with a
real agent process against the protocol peer below (``hubpeer.py`` says why a peer)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from rsparkhub import protocol as P
from rsparkhub.agent.filesync import FileMessage, FileSync, plan_resync
from rsparkhub.agent.outbox import Outbox
from rsparkhub.agent.workdir import Workdir, sha256_bytes

from hubpeer import HubPeer, start_agent, stop_agent


def write(root: Path, rel: str, content: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    # a new mtime even within the file system's timestamp granularity
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def sha(content: bytes) -> str:
    return sha256_bytes(content)


class LinkedSync(NamedTuple):
    """A ``FileSync`` on a real directory, baselined and connected to ``send``, a sender
    that keeps in ``sent`` what would go over the socket (it stands for the hub link)."""

    wd: Workdir
    outbox: Outbox
    files: FileSync
    sent: list[FileMessage]
    send: Callable[[FileMessage], Awaitable[bool]]


async def linked_sync(root: Path) -> LinkedSync:
    """What the tests below start from (files written before it are the hub's baseline)."""
    wd = Workdir(root)
    outbox = Outbox("s")
    files = FileSync(wd, outbox)
    await files.baseline()
    sent: list[FileMessage] = []

    async def send(msg: FileMessage) -> bool:
        sent.append(msg)
        return True

    await files.connected(send)
    return LinkedSync(wd, outbox, files, sent, send)


def test_plan_resync_decides_per_path(tmp_path: Path) -> None:
    """Every case of the decision, on one tree: what the hub held at the last ack
    (``known``), what the tree holds now and what the hub holds now (``manifest``)."""
    wd = Workdir(tmp_path, max_file_bytes=1000)
    for rel in ("code-changed", "code-deleted", "hub-changed", "hub-deleted", "same",
                "ack-lost", "both-deleted", "refused", "big"):  # fmt: skip
        write(tmp_path, rel, b"old " + rel.encode())
    wd.baseline()  # the hub holds all of these
    wd.commit_change(wd.read_change("refused"), refused=True)  # type: ignore[arg-type]
    # code, while the link was down
    write(tmp_path, "code-changed", b"new by code")
    write(tmp_path, "code-created", b"created by code")
    (tmp_path / "code-deleted").unlink()
    write(tmp_path, "ack-lost", b"the hub committed this, the ack was lost")
    (tmp_path / "both-deleted").unlink()
    write(tmp_path, "big", b"x" * 2000)  # too big to send now: left alone
    # the hub, meanwhile
    manifest = {
        rel: sha(b"old " + rel.encode()) for rel in ("code-changed", "code-deleted", "same", "big")
    }
    manifest["hub-changed"] = sha(b"saved by a user")
    manifest["hub-created"] = sha(b"uploaded by a user")
    manifest["ack-lost"] = sha(b"the hub committed this, the ack was lost")

    plan = plan_resync(manifest, wd.snapshot(), wd.known)

    assert plan.to_send == ["code-changed", "code-created", "code-deleted"]
    assert plan.to_want == ["hub-changed", "hub-created"]
    assert plan.to_delete == ["hub-deleted"]
    assert sorted(plan.to_mark_known) == ["ack-lost"]
    assert plan.to_mark_known["ack-lost"].sha256 == manifest["ack-lost"]
    assert plan.to_forget == ["both-deleted"]
    # "same" (identical) and "refused" (the hub refused this content) need nothing

    # code changed a file the hub also changed: code's version is sent (the hub keeps the
    # version it overwrites in the file's history)
    write(tmp_path, "hub-changed", b"code's version")
    plan = plan_resync(manifest, wd.snapshot(), wd.known)
    assert "hub-changed" in plan.to_send and "hub-changed" not in plan.to_want
    # code deleted a file the hub changed: the hub's save is kept (and comes back here)
    (tmp_path / "hub-changed").unlink()
    plan = plan_resync(manifest, wd.snapshot(), wd.known)
    assert "hub-changed" in plan.to_want and "hub-changed" not in plan.to_send


async def test_changes_stay_in_flight_until_acked(tmp_path: Path) -> None:
    wd, outbox, files, sent, send = await linked_sync(tmp_path)
    write(tmp_path, "a.csv", b"1")
    await files.scan_and_send()
    assert [(m.type, m.fseq, m.path) for m in sent] == [("file_changed", 1, "a.csv")]
    assert "a.csv" not in wd.known  # not committed before the ack

    await files.scan_and_send()
    assert len(sent) == 1  # in flight: not sent again

    write(tmp_path, "a.csv", b"2")  # changed again while in flight: the newer one goes out
    await files.scan_and_send()
    assert [(m.type, m.fseq) for m in sent[1:]] == [("file_changed", 2)]

    await files.acked(P.FileAck(fseq=1))
    await files.scan_and_send()
    assert len(sent) == 2  # fseq 2 still in flight covers it
    await files.acked(P.FileAck(fseq=2))
    assert wd.known["a.csv"].sha256 == sha(b"2")
    await files.scan_and_send()
    assert len(sent) == 2 and files.in_flight == 0

    # a deletion is acknowledged the same way
    (tmp_path / "a.csv").unlink()
    await files.scan_and_send()
    assert [(m.type, m.fseq, m.path) for m in sent[2:]] == [("file_deleted", 3, "a.csv")]
    await files.scan_and_send()
    assert len(sent) == 3
    await files.acked(P.FileAck(fseq=3))
    assert "a.csv" not in wd.known

    # the link drops with a change in flight: it is unsent again
    write(tmp_path, "b.txt", b"b")
    await files.scan_and_send()
    assert sent[-1].fseq == 4
    files.disconnected()
    await files.scan_and_send()  # no link: nothing goes out, nothing is lost
    assert len(sent) == 4
    await files.connected(send)
    await files.scan_and_send()
    assert [(m.type, m.fseq, m.path) for m in sent[4:]] == [("file_changed", 5, "b.txt")]


async def test_a_change_names_the_content_it_overwrote(tmp_path: Path) -> None:
    """``base_sha256``: what the tree held before code's write — the hub's last put or
    ack, or the change still in flight; None for a new file (the hub merges an open
    document against it)."""
    write(tmp_path, "a.R", b"v1")
    _, _, files, sent, send = await linked_sync(tmp_path)

    def bases() -> list[str | None]:
        return [m.base_sha256 for m in sent if isinstance(m, P.FileFromAgent)]

    write(tmp_path, "a.R", b"v2 by code")
    await files.scan_and_send()
    write(tmp_path, "a.R", b"v3 by code")  # again, while v2 is in flight
    await files.scan_and_send()
    assert bases() == [sha(b"v1"), sha(b"v2 by code")]
    await files.acked(P.FileAck(fseq=1))
    await files.acked(P.FileAck(fseq=2))
    # a version point of the hub's lands on disk; code then overwrites that
    v4 = b"v4 saved"
    await files.put(P.FilePut(path="a.R", content_b64="djQgc2F2ZWQ=", sha256=sha(v4)))
    write(tmp_path, "a.R", b"v5 by code")
    write(tmp_path, "new.R", b"new")
    await files.scan_and_send()
    assert {m.path: m.base_sha256 for m in sent[2:]} == {"a.R": sha(v4), "new.R": None}
    await files.acked(P.FileAck(fseq=3))
    await files.acked(P.FileAck(fseq=4))
    assert files.in_flight == 0
    # a re-dial sends what code wrote while the link was down, against the last ack
    files.disconnected()
    write(tmp_path, "a.R", b"v6 by code")
    await files.connected(send, manifest={"a.R": sha(b"v5 by code"), "new.R": sha(b"new")})
    assert bases()[4:] == [sha(b"v5 by code")]


async def test_a_hub_put_does_not_overwrite_an_unsent_write_of_code(tmp_path: Path) -> None:
    """A version point reaches the session while code (a long execution, not scanned yet)
    has rewritten the file: the put does not overwrite it; code's change goes to the hub
    against the content it overwrote, and the hub's merge comes back as a later put."""
    write(tmp_path, "a.R", b"v1")
    wd, _, files, sent, _ = await linked_sync(tmp_path)
    write(tmp_path, "a.R", b"v1 + code")  # no scan yet
    v2 = b"v1 + typed"
    await files.put(P.FilePut(path="a.R", content_b64="djEgKyB0eXBlZA==", sha256=sha(v2)))
    assert (tmp_path / "a.R").read_bytes() == b"v1 + code"  # not overwritten
    [msg] = sent
    assert isinstance(msg, P.FileFromAgent) and msg.sha256 == sha(b"v1 + code")
    assert msg.base_sha256 == sha(b"v1")
    await files.scan_and_send()
    assert len(sent) == 1  # in flight: not sent twice
    await files.acked(P.FileAck(fseq=1))
    assert wd.known["a.R"].sha256 == sha(b"v1 + code")
    # the hub's merge of both arrives: the tree holds what the hub sent, so it goes in
    merged = b"v1 + typed + code"
    await files.put(
        P.FilePut(path="a.R", content_b64="djEgKyB0eXBlZCArIGNvZGU=", sha256=sha(merged))
    )
    assert (tmp_path / "a.R").read_bytes() == merged and len(sent) == 1
    # a file code deleted (unsent) comes back with the hub's put: a save outlives it
    (tmp_path / "a.R").unlink()
    await files.put(P.FilePut(path="a.R", content_b64="djI=", sha256=sha(b"v2")))
    assert (tmp_path / "a.R").read_bytes() == b"v2" and len(sent) == 1


async def test_a_refused_file_is_reported_once_and_kept(tmp_path: Path) -> None:
    wd, outbox, files, sent, send = await linked_sync(tmp_path)
    write(tmp_path, "huge.bin", b"data")
    await files.scan_and_send()
    msg = "The workspace is full."
    await files.acked(P.FileAck(fseq=1, ok=False, error_code="quota_exceeded", message=msg))
    [event] = [env.event for env in outbox.take_batch()]
    assert event == P.FileRefusedEvent(path="huge.bin", error_code="quota_exceeded", message=msg)
    await files.scan_and_send()
    assert len(sent) == 1  # not resent forever
    assert (tmp_path / "huge.bin").read_bytes() == b"data"  # the session's copy stays

    # a re-dial: the hub does not have it, and it is not deleted here either
    plan = await files.connected(send, manifest={})
    assert plan is not None and plan.to_delete == [] and plan.to_send == []
    assert (tmp_path / "huge.bin").exists()

    # code changes it again: a new try
    write(tmp_path, "huge.bin", b"smaller")
    await files.scan_and_send()
    assert [(m.type, m.fseq) for m in sent[1:]] == [("file_changed", 2)]
    # deleted by code before anything was accepted: the hub never had it, nothing to say
    await files.acked(P.FileAck(fseq=2, ok=False, error_code="quota_exceeded", message=msg))
    (tmp_path / "huge.bin").unlink()
    await files.scan_and_send()
    assert len(sent) == 2 and "huge.bin" not in wd.known


async def test_a_hub_write_supersedes_a_change_in_flight(tmp_path: Path) -> None:
    """The hub's own later write wins: the ack of the older change of code must not make
    the agent believe the hub holds code's content (it would echo the hub's file back)."""
    wd, _, files, sent, _ = await linked_sync(tmp_path)
    write(tmp_path, "x.R", b"by code")
    await files.scan_and_send()
    hub = b"saved by a user"
    await files.put(P.FilePut(path="x.R", content_b64="c2F2ZWQgYnkgYSB1c2Vy", sha256=sha(hub)))
    await files.acked(P.FileAck(fseq=1))
    assert wd.known["x.R"].sha256 == sha(hub)
    await files.scan_and_send()
    assert len(sent) == 1


@pytest.mark.asyncio
async def test_redial_resyncs_from_the_manifest(tmp_path: Path) -> None:
    """A real agent: a change of code in flight when the link drops is resent; what code
    did while the link was down is sent; what the hub changed meanwhile is asked for
    (``file_want``), what it deleted is deleted; a refused file becomes a
    ``file_refused`` event and is not resent."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer(files={"hub.txt": b"v1", "keep.txt": b"keep", "gone.txt": b"gone"})
    await peer.start()
    proc = await start_agent(peer, workdir, "--languages", "python", "--scan-interval", "0.2")
    try:
        await peer.wait_for(lambda: (workdir / "gone.txt").exists(), 10)
        done, _ = await peer.run(
            P.ExecuteRequest(
                id="w1", code="open('code1.txt', 'w').write('one')", language="python"
            ),
            60,
        )
        assert done.status == "ok"
        assert peer.files["code1.txt"] == b"one" and peer.file_acks[-1].ok

        peer.auto_file_ack = False  # the next change stays in flight
        await peer.run(
            P.ExecuteRequest(id="w2", code="open('code2.txt', 'w').write('two')", language="python")
        )
        assert "code2.txt" not in peer.files

        # while the link is down: the hub changes and deletes, code writes and deletes
        peer.files["hub.txt"] = b"v2"
        del peer.files["gone.txt"]
        peer.welcome_delay = 1.0
        await peer.drop()
        await peer.wait_for(lambda: len(peer.connections) == 2, 10)
        write(workdir, "code3.txt", b"three")
        (workdir / "keep.txt").unlink()
        peer.auto_file_ack = True

        def synced() -> bool:
            return (
                peer.files.get("code2.txt") == b"two"
                and peer.files.get("code3.txt") == b"three"
                and "keep.txt" not in peer.files
                and (workdir / "hub.txt").read_bytes() == b"v2"
                and not (workdir / "gone.txt").exists()
            )

        await peer.wait_for(synced, 20)
        assert peer.connections[1].hello.resumed
        assert peer.wants == [["hub.txt"]]
        resent = [m.path for m in peer.connections[1].received if isinstance(m, P.FileFromAgent)]
        assert sorted(resent) == ["code2.txt", "code3.txt"]  # not code1.txt: acknowledged

        # a refusal: a durable event, the file stays, it is not sent again
        peer.refuse["big.csv"] = ("quota_exceeded", "The workspace is full.")
        await peer.run(
            P.ExecuteRequest(id="w3", code="open('big.csv', 'w').write('x')", language="python")
        )

        def refused() -> list[P.FileRefusedEvent]:
            return [
                e.event for e in peer.events.values() if isinstance(e.event, P.FileRefusedEvent)
            ]

        await peer.wait_for(lambda: bool(refused()), 10)
        assert refused()[0].path == "big.csv" and refused()[0].error_code == "quota_exceeded"
        await asyncio.sleep(1.0)  # five idle scans
        tries = [m for m in peer.log if isinstance(m, P.FileFromAgent) and m.path == "big.csv"]
        assert len(tries) == 1 and (workdir / "big.csv").exists()
    finally:
        assert await stop_agent(peer, proc) == 0
        await peer.close()
