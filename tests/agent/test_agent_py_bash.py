"""The session's Python (ipykernel) and bash (bash_kernel) kernels, driven through the real
hub: run and source modes against ``python FILE`` / ``bash FILE``, plots, interrupt,
completion, coalescing of big outputs, kernel death, and SIGTERM to the agent. One session
serves the whole module."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import psutil
import pytest
import pytest_asyncio
from hubsession import Recorder, new_workspace, plots_of, results_of, stdout_of

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess

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
>>> # a comment
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
$ #!/bin/bash
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
async def session(references: dict[str, subprocess.Popen[str]], shared_hub: HubProcess):
    token = shared_hub.make_user("ana")
    files = {"script.py": SCRIPT_PY.encode(), "src.py": SOURCE_PY.encode()}
    files["script.sh"] = SCRIPT_SH.encode()
    wid = await new_workspace(shared_hub, token, files)
    async with HubClient(shared_hub.url, token) as c, c.attach(wid) as att:
        yield Recorder(att), c, wid


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory):
    """What ``python script.py`` and ``bash script.sh`` print outside rsparkhub, started
    before the hub so that they run while the hub and the session start."""
    d = tmp_path_factory.mktemp("local")
    (d / "script.py").write_text(SCRIPT_PY)
    (d / "script.sh").write_text(SCRIPT_SH)
    env = dict(os.environ, MPLBACKEND="Agg")
    procs = {
        name: subprocess.Popen(
            [*cmd, name], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for name, cmd in (("script.py", [sys.executable]), ("script.sh", ["bash"]))
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


async def local_output(references: dict[str, subprocess.Popen[str]], name: str) -> str:
    out, err = await asyncio.to_thread(references[name].communicate, timeout=60)
    assert references[name].returncode == 0, err
    return out


async def test_python_run_matches_python_file(session, references) -> None:
    rec, c, _ = session
    expected = await local_output(references, "script.py")
    done, events = await rec.run(path="script.py", mode="run")
    assert done.status == "ok", events
    assert stdout_of(events) == expected
    assert not results_of(events)  # no last-value display
    plots = plots_of(events)
    assert len(plots) == 1 and plots[0].url  # the hub stored it
    assert (await c.plot_bytes(plots[0].url))[:4] == b"\x89PNG"
    done, events = await rec.run("print(total)", language="python")
    assert stdout_of(events) == "30\n"


async def test_python_source_transcript(session) -> None:
    rec, _, _ = session
    done, events = await rec.run(path="src.py", mode="source")
    assert done.status == "ok", events
    assert stdout_of(events) == SOURCE_PY_EXPECTED


async def test_python_console_result_and_error(session) -> None:
    rec, _, _ = session
    done, events = await rec.run("6*7", language="python")
    assert results_of(events) == ["42"]
    done, events = await rec.run("1/0", language="python")
    assert done.status == "error"
    err = next(e for e in events if isinstance(e, P.ErrorEvent))
    assert err.ename == "ZeroDivisionError"
    assert not any("\x1b[" in line for line in err.traceback)


async def test_python_kernel_starts_without_its_debugger_and_user_code_imports_debugpy(
    session,
) -> None:
    """The launcher hides debugpy while ipykernel makes the kernel (launch.py: the IDE does
    not speak the debug protocol; it costs ~8 MiB and some start time), then gives it back."""
    rec, _, _ = session
    code = (
        "import sys\n"
        "print(sys.modules['ipykernel.debugger']._is_debugpy_available)\n"
        "import debugpy\n"
        "print(debugpy.__name__, callable(debugpy.listen))\n"
    )
    done, events = await rec.run(code, language="python")
    assert done.status == "ok", events
    assert stdout_of(events) == "False\ndebugpy True\n"


async def test_python_interrupt(session) -> None:
    rec, _, _ = session
    mark = len(rec.log)
    await rec.send(
        P.ExecuteRequest(id="py-sleep", code="import time\ntime.sleep(60)", language="python")
    )
    await rec.wait_busy("python", mark)
    await asyncio.sleep(0.3)
    reply = await rec.reply(P.InterruptRequest(id="py-int", language="python"))
    assert reply.ok
    assert (await rec.wait_done("py-sleep", 5)).status == "aborted"


async def test_big_output_is_coalesced(session) -> None:
    rec, _, _ = session
    code = "import sys\nfor i in range(100000):\n    print(i)\n"
    done, events = await rec.run(code, language="python", timeout=60)
    assert done.status == "ok"
    assert stdout_of(events) == "".join(f"{i}\n" for i in range(100000))
    streams = [e for e in events if isinstance(e, P.StreamEvent)]
    assert len(streams) < 200
    assert max(len(e.text) for e in streams) <= 256 * 1024


async def test_complete_python(session) -> None:
    rec, _, _ = session
    # the first completion imports jedi, which can take longer than the 2 s busy limit
    for attempt in range(5):
        reply = await rec.reply(
            P.CompleteRequest(
                id=f"py-cmp{attempt}", language="python", code="import os\nos.pa", cursor_pos=15
            )
        )
        if reply.ok or reply.error_code != "busy":
            break
    assert reply.ok and "path" in reply.content["matches"]


async def test_bash_run_matches_bash_file(session, references) -> None:
    rec, _, _ = session
    expected = await local_output(references, "script.sh")
    done, events = await rec.run(path="script.sh", mode="run")
    assert done.status == "ok", events
    assert stdout_of(events) == expected


async def test_bash_source_transcript(session) -> None:
    rec, _, _ = session
    done, events = await rec.run(path="script.sh", mode="source")
    assert done.status == "ok", events
    assert stdout_of(events) == SOURCE_SH_EXPECTED


async def test_kernel_death_is_reported_and_recovered(session) -> None:
    rec, _, _ = session
    done, _ = await rec.run("import os\nos._exit(1)", language="python", timeout=30)
    assert done.status == "error" and done.error_code == "kernel_died"
    done, events = await rec.run("2+2", language="python")
    assert done.status == "ok"
    assert results_of(events) == ["4"]


async def test_bash_interrupt_and_python_run_error(session) -> None:
    rec, c, wid = session
    mark = len(rec.log)
    await rec.send(P.ExecuteRequest(id="sh-sleep", code="sleep 30", language="bash"))
    await rec.wait_busy("bash", mark)
    await asyncio.sleep(0.3)
    await rec.reply(P.InterruptRequest(id="sh-int"))
    assert (await rec.wait_done("sh-sleep", 5)).status == "aborted"
    done, events = await rec.run("echo ok", language="bash")
    assert stdout_of(events) == "ok\n"

    await c.save_text(wid, "bad.py", "print('before')\nraise ValueError('bad value')\n", None)
    done, events = await rec.run(path="bad.py", mode="run")
    assert done.status == "error"
    assert stdout_of(events) == "before\n"
    err = next(e for e in events if isinstance(e, P.ErrorEvent))
    assert err.ename == "ValueError" and err.evalue == "bad value"
    tb = "\n".join(err.traceback)
    assert "bad.py" in tb and "_rsparkhub" not in tb


def _agent(shared_hub: HubProcess, session_id: str) -> psutil.Process:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        # The agent itself, not the sandbox's setpriv/pasta/bwrap that carry its argv.
        if "rsparkhub.agent" in cmd and session_id in cmd and "python" in cmd[0].rsplit("/")[-1]:
            return p
    raise AssertionError("agent process not found")


async def test_sigterm_stops_kernels_and_exits_zero(session, shared_hub: HubProcess) -> None:
    """Last in the module: it ends the module's session. SIGTERM is what the spawner falls
    back to when ``stop`` is not obeyed, and what an operator or the OS sends."""
    rec, c, wid = session
    assert (await rec.run("echo hi", language="bash"))[0].status == "ok"
    assert (await rec.run("1", language="python"))[0].status == "ok"
    sid = rec.att.session_id
    agent = _agent(shared_hub, sid)
    kernels = agent.children(recursive=True)
    assert len(kernels) >= 2
    session_dir = shared_hub.data_dir / "sessions" / sid
    assert (session_dir / "runtime").is_dir()
    assert len((session_dir / "agent-kernels.pid").read_text().split()) == 2
    assert not any(p.name.startswith("kernel-") for p in (session_dir / "work").iterdir())
    agent.send_signal(signal.SIGINT)  # ignored by the agent itself
    await asyncio.sleep(0.3)
    assert agent.is_running() and agent.status() != psutil.STATUS_ZOMBIE
    agent.send_signal(signal.SIGTERM)
    await rec.pump(
        lambda: any(isinstance(e, P.SessionEvent) and e.exit_code is not None for _, e in rec.log),
        20,
    )
    states = [e.state for _, e in rec.log if isinstance(e, P.SessionEvent)]
    assert "stopped" in states  # said by the agent before it exits
    info = await c.request("GET", f"/api/workspaces/{wid}/session")
    assert info["exit_code"] == 0 and info["state"] == "stopped", info
    gone, alive = psutil.wait_procs(kernels, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    # the agent emptied its record of kernels, or the session's disk went with the session
    pids = session_dir / "agent-kernels.pid"
    assert not os.path.ismount(session_dir)
    assert not pids.exists() or pids.read_text().split() == []
