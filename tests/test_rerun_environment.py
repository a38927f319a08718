"""A re-run and the workspace's environment, on a real hub with real PyPI downloads
(docs/reproducibility.md#the-environment-of-a-re-run): a package the original session
installed into its workspace's overlay (``%pip install``) is not carried to the re-run, so
the printed version differs and the report names the package's version change and the
overlay as its cause; the same version declared in ``requirements.txt`` comes along with
the recorded files and re-runs reproduced, with the same environment key on both sides.

``idna`` because it is small, pure Python, has no dependencies and the kernels' base
(.venv) has another version than the one installed here."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rerun import rerun_report
from test_runs import _wait_done

from rsparkhub.client import HubClient

from conftest import HubProcess, _hub

OLD = "3.4"
BASE = importlib.metadata.version("idna")  # the kernels' interpreter is this .venv's
SCRIPT = b"import idna\nprint('idna', idna.__version__)\n"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    yield from _hub(
        tmp_path_factory.mktemp("hub") / "data", {"RSPARKHUB_SESSION_MEMORY_MB": "1536"}
    )


def _record(hub: HubProcess, token: str, name: str, files: dict[str, bytes], pip: bool) -> Any:
    """Run v.py in a new workspace (after ``%pip install idna==OLD`` when ``pip``); its
    finished record and the workspace id."""

    async def go() -> tuple[str, Any, str]:
        async with HubClient(hub.url, token) as h:
            wid = (await h.ensure_workspace(name))["id"]
            await h.upload(wid, files)
            async with h.attach(wid) as s:
                if pip:
                    done = await s.run(f"%pip install --quiet idna=={OLD}", language="python")
                    assert done.ok, done.events
                r = await s.run(path="v.py", mode="run")
                assert r.ok, r.events
                # the snapshot (taken again: the overlay changed) may follow the run's end
                record = await asyncio.to_thread(_wait_done, hub.client(token), wid, r.request_id)
            await h.stop_session(wid)
        return wid, record, str(r.stdout)

    wid, record, stdout = asyncio.run(go())
    assert stdout.strip() == f"idna {OLD}", stdout
    return wid, record


def test_the_overlay_is_not_carried_and_is_named_as_the_cause(hub: HubProcess) -> None:
    assert BASE != OLD
    token = hub.make_user("olive")
    c = hub.client(token)
    wid, run = _record(hub, token, "overlaid", {"v.py": SCRIPT}, pip=True)
    report = rerun_report(c, wid, run["id"])
    assert report["reproduced"] is False and report["verdict"] == "not reproduced"
    [console] = [d for d in report["differences"] if d["kind"] == "transcript"]
    assert console["blocking"] and f"-idna {OLD}" in "\n".join(console["details"])
    env = [d["cause"] for d in report["differences"] if d["kind"] == "environment"]
    assert (
        f"Python package idna {OLD} → {BASE} (the original's idna was installed in its "
        "workspace's overlay, which a re-run does not carry)" in env
    ), env
    assert report["environment"]["original"]["overlay"] == {"python": {"idna": OLD}}
    assert report["environment"]["rerun"]["overlay"] == {}
    assert report["environment"]["original"]["keys"] == {}  # nothing declared
    assert any(
        n.startswith(f"the original took Python package(s) idna {OLD} from its workspace's overlay")
        for n in report["notes"]
    ), report["notes"]


def test_a_declared_version_reruns_reproduced_with_the_same_key(hub: HubProcess) -> None:
    token = hub.make_user("dora")
    c = hub.client(token)
    files = {"requirements.txt": f"idna=={OLD}\n".encode(), "v.py": SCRIPT}
    wid, run = _record(hub, token, "declared", files, pip=False)
    [built] = sorted((Path(hub.data_dir) / "environments" / "python").iterdir())
    report = rerun_report(c, wid, run["id"])
    assert report["reproduced"] is True, report["differences"]
    assert [d for d in report["differences"] if d["kind"] == "environment"] == []
    keys = report["environment"]
    assert keys["original"]["keys"] == keys["rerun"]["keys"] == {"python": built.name}
    assert keys["original"]["overlay"] == {}
    assert (
        f"the same declared Python environment ({built.name[:12]}) on both sides"
        in (report["notes"])
    )
    # the re-run took it from the cache: still one environment, built once
    assert [p.name for p in (Path(hub.data_dir) / "environments" / "python").iterdir()] == [
        built.name
    ]
    assert hub.log_path.read_text().count("built environment python/") == 1
