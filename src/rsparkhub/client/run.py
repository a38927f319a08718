"""``rsparkhub run FILE``: upload a file (and its neighbours), run it in the workspace's
session, print the output as produced, save the plots, and exit non-zero on failure.

``rsparkhub render FILE``: upload a document (and its neighbours), render it in the
workspace's session, print the render log as it comes, and write the result locally."""

from __future__ import annotations

import sys
from pathlib import Path

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

CLI_AGENT = "rsparkhub-cli"  # the User-Agent's program: run records say "rsparkhub run …"
SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".Rproj.user"}


def _neighbours(folder: Path, limit: int = 500) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for p in sorted(folder.rglob("*")):
        if any(part in SKIP_DIRS or part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(folder).as_posix()] = p.read_bytes()
            if len(out) >= limit:
                break
    return out


async def _upload(
    hub: HubClient, file: Path, workspace: str, project: str, with_dir: Path | None
) -> tuple[dict[str, object], str]:
    """Upload ``file`` (and the folder ``with_dir``) to the workspace; returns the
    workspace and the file's path in it."""
    ws = await hub.ensure_workspace(workspace, project)
    files: dict[str, bytes] = {}
    name = file.name
    if with_dir is not None:
        files.update(_neighbours(with_dir))
        try:
            name = file.resolve().relative_to(with_dir.resolve()).as_posix()
        except ValueError:
            pass
    files[name] = file.read_bytes()
    await hub.upload(str(ws["id"]), files)
    return ws, name


async def render_file(
    url: str,
    token: str,
    file: Path,
    workspace: str,
    project: str,
    output: Path | None,
    in_session: bool,
    with_dir: Path | None,
) -> int:
    """Render ``file`` through the hub; the result goes to ``output`` (default: next to
    ``file`` under the name the renderer chose). Returns the exit code."""
    async with HubClient(url, token, agent=CLI_AGENT) as hub:
        ws, name = await _upload(hub, file, workspace, project, with_dir)
        wid = str(ws["id"])
        sys.stderr.write(f"rendering {name} in workspace {workspace!r} …\n")
        document: P.DocumentEvent | None = None
        status = "failed"
        async with hub.attach(wid) as session:
            async for ev in session.render(name, in_session=in_session):
                if isinstance(ev, P.StreamEvent):
                    sys.stderr.write(ev.text)
                    sys.stderr.flush()
                elif isinstance(ev, P.ErrorEvent):
                    sys.stderr.write(f"\n{ev.ename}: {ev.evalue}\n")
                elif isinstance(ev, P.DocumentEvent):
                    document = ev
                elif isinstance(ev, P.SessionEvent):
                    sys.stderr.write(f"rsparkhub: the session {ev.state}: {ev.message}\n")
                elif isinstance(ev, P.DoneEvent):
                    status = ev.status
                    if ev.status == "failed":
                        sys.stderr.write(f"rsparkhub: {ev.message}\n")
        if status != "ok" or document is None:
            return 1
        data = await hub.read_file(wid, document.output)
        target = output or file.resolve().parent / Path(document.output).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        sys.stderr.write(
            f"Output created: {target} ({len(data)} bytes, {document.engine}, "
            f"{document.duration_ms / 1000:.1f} s)\n"
        )
        return 0


async def run_file(
    url: str,
    token: str,
    file: Path,
    workspace: str,
    project: str,
    mode: str,
    language: str | None,
    plots_dir: Path | None,
    with_dir: Path | None,
) -> int:
    async with HubClient(url, token, agent=CLI_AGENT) as hub:
        ws, name = await _upload(hub, file, workspace, project, with_dir)
        if plots_dir is not None:
            plots_dir.mkdir(parents=True, exist_ok=True)
        status = "failed"
        n_plot = 0
        async with hub.attach(str(ws["id"])) as session:
            async for ev in session.execute(path=name, mode=mode, language=language):  # type: ignore[arg-type]
                if isinstance(ev, P.StreamEvent):
                    stream = sys.stdout if ev.name == "stdout" else sys.stderr
                    stream.write(ev.text)
                    stream.flush()
                elif isinstance(ev, P.ResultEvent):
                    text = ev.data.get("text/plain")
                    if text:
                        sys.stdout.write(str(text).rstrip("\n") + "\n")
                elif isinstance(ev, P.ErrorEvent):
                    sys.stderr.write("\n".join(ev.traceback) or f"{ev.ename}: {ev.evalue}")
                    sys.stderr.write("\n")
                elif isinstance(ev, P.PlotEvent):
                    n_plot += 1
                    if plots_dir is not None and ev.url:
                        ext = {"image/png": "png", "image/svg+xml": "svg"}.get(ev.mime, "bin")
                        (plots_dir / f"plot-{n_plot:03d}.{ext}").write_bytes(
                            await hub.plot_bytes(ev.url)
                        )
                elif isinstance(ev, P.SessionEvent):
                    sys.stderr.write(f"rsparkhub: the session {ev.state}: {ev.message}\n")
                elif isinstance(ev, P.DoneEvent):
                    status = ev.status
                    if ev.status == "failed":
                        sys.stderr.write(f"rsparkhub: {ev.message}\n")
        sys.stdout.flush()
        return 0 if status == "ok" else 1
