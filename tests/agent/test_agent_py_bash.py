"""The agent with real Python (ipykernel) and bash (bash_kernel) kernels: run and source
modes, plots, interrupt, completion, coalescing of big outputs, unavailable languages."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from rsparkhub import protocol as P

from hubpeer import HubPeer, plots_of, start_agent, stdout_of, stop_agent

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCRIPT_PY = """\
import matplotlib.pyplot as plt

def square(v):
    return v * v

values = [square(i) for i in range(5)]
print("values:", values)
print("file:", __file__.endswith("script.py"))
fig, ax = plt.subplots()
ax.plot(values)
plt.show()
values[-1]
total = sum(values)
print(f"total = {total}")
"""

SOURCE_PY = """\
x = 1 + 2
x
def f(a):
    return a * 2
print(f(x))
# a comment
[i for i in range(3)]
"""

SOURCE_PY_EXPECTED = """\
>>> x = 1 + 2
>>> x
3
>>> def f(a):
...     return a * 2
...{TRAILING_SPACE}
>>> print(f(x))
6
>>> [i for i in range(3)]
[0, 1, 2]
""".format(TRAILING_SPACE=" ")

SCRIPT_SH = """\
#!/bin/bash
echo "hello from bash"
for i in 1 2 3; do
  echo "i=$i"
done
name=world
greet() {
  echo "hi $1"
}
greet "$name"
cat <<EOF
heredoc $name
EOF
echo done
"""

SOURCE_SH_EXPECTED = """\
$ echo "hello from bash"
hello from bash
$ for i in 1 2 3; do
>   echo "i=$i"
> done
i=1
i=2
i=3
$ name=world
$ greet() {
>   echo "hi $1"
> }
$ greet "$name"
hi world
$ cat <<EOF
> heredoc $name
> EOF
heredoc world
$ echo done
done
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def agent(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pysession")
    workdir = root / "work"
    workdir.mkdir()
    peer = HubPeer(
        files={
            "script.py": SCRIPT_PY.encode(),
            "src.py": SOURCE_PY.encode(),
            "script.sh": SCRIPT_SH.encode(),
        }
    )
    await peer.start()
    proc = await start_agent(peer, workdir)
    await peer.wait_for(lambda: (workdir / "script.sh").exists(), 10)
    yield peer, proc, workdir
    await stop_agent(peer, proc)
    await peer.close()


async def test_python_run_matches_python_file(agent) -> None:
    peer, _, workdir = agent
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "script.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, MPLBACKEND="Agg"),
    )
    expected = proc.stdout
    done, events = await peer.run(P.ExecuteRequest(id="py-run", path="script.py", mode="run"))
    assert done.status == "ok", events
    assert stdout_of(events) == expected
    assert not [e for e in events if isinstance(e, P.ResultEvent)]  # no last-value display
    plots = plots_of(events)
    assert len(plots) == 1 and base64.b64decode(plots[0].content_b64)[:4] == b"\x89PNG"
    done, events = await peer.run(
        P.ExecuteRequest(id="py-after", code="print(total)", language="python")
    )
    assert stdout_of(events) == "30\n"


async def test_python_source_transcript(agent) -> None:
    peer, _, _ = agent
    done, events = await peer.run(P.ExecuteRequest(id="py-src", path="src.py", mode="source"))
    assert done.status == "ok", events
    assert stdout_of(events) == SOURCE_PY_EXPECTED


async def test_python_console_result_and_error(agent) -> None:
    peer, _, _ = agent
    done, events = await peer.run(P.ExecuteRequest(id="py-c", code="6*7", language="python"))
    assert [e.data["text/plain"] for e in events if isinstance(e, P.ResultEvent)] == ["42"]
    done, events = await peer.run(P.ExecuteRequest(id="py-e", code="1/0", language="python"))
    assert done.status == "error"
    err = next(e for e in events if isinstance(e, P.ErrorEvent))
    assert err.ename == "ZeroDivisionError"
    assert not any("\x1b[" in line for line in err.traceback)


async def test_python_interrupt(agent) -> None:
    peer, _, _ = agent
    await peer.request(
        P.ExecuteRequest(id="py-sleep", code="import time\ntime.sleep(60)", language="python")
    )
    await asyncio.sleep(0.5)
    reply = await peer.reply(P.InterruptRequest(id="py-int", language="python"))
    assert reply.ok
    await peer.wait_for(lambda: peer.done_of("py-sleep") is not None, 5)
    assert peer.done_of("py-sleep").status == "aborted"


async def test_big_output_is_coalesced(agent) -> None:
    peer, _, _ = agent
    code = "import sys\nfor i in range(200000):\n    print(i)\n"
    done, events = await peer.run(P.ExecuteRequest(id="py-big", code=code, language="python"), 60)
    assert done.status == "ok"
    text = stdout_of(events)
    assert text == "".join(f"{i}\n" for i in range(200000))
    streams = [e for e in events if isinstance(e, P.StreamEvent)]
    assert len(streams) < 200
    assert max(len(e.text) for e in streams) <= 256 * 1024


async def test_complete_python(agent) -> None:
    peer, _, _ = agent
    # the first completion imports jedi, which can take longer than the 2 s busy limit
    for attempt in range(5):
        reply = await peer.reply(
            P.CompleteRequest(
                id=f"py-cmp{attempt}", language="python", code="import os\nos.pa", cursor_pos=15
            )
        )
        if reply.ok or reply.error_code != "busy":
            break
    assert reply.ok and "path" in reply.content["matches"]


async def test_bash_run_matches_bash_file(agent) -> None:
    peer, _, workdir = agent
    expected = (
        await asyncio.to_thread(
            subprocess.run,
            ["bash", "script.sh"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        )
    ).stdout
    done, events = await peer.run(P.ExecuteRequest(id="sh-run", path="script.sh", mode="run"), 60)
    assert done.status == "ok", events
    assert stdout_of(events) == expected


async def test_bash_source_transcript(agent) -> None:
    peer, _, _ = agent
    done, events = await peer.run(P.ExecuteRequest(id="sh-src", path="script.sh", mode="source"))
    assert done.status == "ok", events
    assert stdout_of(events) == SOURCE_SH_EXPECTED


async def test_missing_file_fails(agent) -> None:
    peer, _, _ = agent
    done, _ = await peer.run(P.ExecuteRequest(id="nofile", path="nope.py", mode="run"))
    assert done.status == "failed" and done.error_code == "file_not_found"


async def test_unavailable_language(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    peer = HubPeer()
    await peer.start()
    proc = await start_agent(peer, workdir, "--languages", "python")
    try:
        assert peer.connections[0].hello.languages == ["python"]
        done, _ = await peer.run(P.ExecuteRequest(id="u1", code="echo hi", language="bash"), 10)
        assert done.status == "failed" and done.error_code == "language_unavailable"
        assert done.message
        done, _ = await peer.run(P.ExecuteRequest(id="u2", code="x", path="a.txt"), 10)
        assert done.status == "failed"
    finally:
        assert await stop_agent(peer, proc) == 0
        await peer.close()


async def test_kernel_death_is_reported_and_recovered(agent) -> None:
    peer, _, _ = agent
    done, _ = await peer.run(
        P.ExecuteRequest(id="die", code="import os\nos._exit(1)", language="python"), 30
    )
    assert done.status == "error" and done.error_code == "kernel_died"
    done, events = await peer.run(P.ExecuteRequest(id="alive", code="2+2", language="python"), 60)
    assert done.status == "ok"
    assert [e.data["text/plain"] for e in events if isinstance(e, P.ResultEvent)] == ["4"]


async def test_bash_interrupt_and_python_run_error(agent) -> None:
    peer, _, workdir = agent
    last = max(peer.events, default=0)
    await peer.request(P.ExecuteRequest(id="sh-sleep", code="sleep 30", language="bash"))
    await peer.wait_for(
        lambda: any(
            isinstance(env.event, P.StatusEvent)
            and env.event.language == "bash"
            and env.event.state == "busy"
            for s, env in peer.events.items()
            if s > last
        ),
        30,
    )
    await asyncio.sleep(0.3)
    await peer.reply(P.InterruptRequest(id="sh-int"))
    await peer.wait_for(lambda: peer.done_of("sh-sleep") is not None, 5)
    assert peer.done_of("sh-sleep").status == "aborted"
    done, events = await peer.run(P.ExecuteRequest(id="sh-ok", code="echo ok", language="bash"))
    assert stdout_of(events) == "ok\n"

    (workdir / "bad.py").write_text("print('before')\nraise ValueError('bad value')\n")
    done, events = await peer.run(P.ExecuteRequest(id="py-bad", path="bad.py", mode="run"))
    assert done.status == "error"
    assert stdout_of(events) == "before\n"
    err = next(e for e in events if isinstance(e, P.ErrorEvent))
    assert err.ename == "ValueError" and err.evalue == "bad value"
    tb = "\n".join(err.traceback)
    assert "bad.py" in tb and "_rsparkhub" not in tb
