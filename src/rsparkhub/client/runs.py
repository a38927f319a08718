"""``rsparkhub runs``: a workspace's run records as a table, one record in full."""

from __future__ import annotations

import json
import sys
from typing import Any

from rsparkhub.client import HubClient


def _outputs(run: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for o in run["outputs"]:
        counts[o["kind"]] = counts.get(o["kind"], 0) + 1
    return ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items()) or "-"


def _duration(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def table(runs: list[dict[str, Any]]) -> str:
    rows = [("RUN", "STARTED", "USER", "COMMAND", "VERSION", "STATUS", "TIME", "OUTPUTS")]
    for r in runs:
        rows.append(
            (
                r["id"][:12],
                (r["started_at"] or "")[:19].replace("T", " "),
                r["user"],
                r["command"],
                f"v{r['file_version']}" if r["file_version"] else "-",
                r["status"],
                _duration(r["duration_ms"]),
                _outputs(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def details(run: dict[str, Any]) -> str:
    env = run["environment"]
    langs = env.get("languages") or {}
    lines = [
        f"run        {run['id']}",
        f"command    {run['command']}  ({run['language']}, by {run['user']}"
        + (f" via {run['via']})" if run.get("via") else ")"),
        f"file       {run['path']} v{run['file_version']}  sha256 {run['file_sha256']}",
        f"started    {run['started_at']}",
        f"finished   {run['finished_at'] or '-'}  ({_duration(run['duration_ms'])})",
        f"status     {run['status']}"
        + (f"  {run['error_code']}: {run['message']}" if run["error_code"] else ""),
        f"session    {run['session_id']}  spawner {env['spawner']}  profile "
        f"{env['profile'] or '-'}  image {env['image'] or '-'}",
        f"os         {env.get('os') or '-'}",
    ]
    for lang, info in langs.items():
        lines.append(f"{lang:<10} {info['version']}  ({info['packages']} packages)")
    lines.append(f"environment {env['id'] or '-'}")
    t = run["transcript"]
    lines.append(f"transcript {t['sha256'] or '-'}  ({t['bytes']} bytes)")
    lines.append(f"inputs     {run['input_count']} files  (manifest {run['inputs_sha256']})")
    for f in run.get("inputs", []):
        lines.append(f"  {f['path']} v{f['version']}  {f['sha256'][:12]}")
    lines.append(f"outputs    {_outputs(run)}")
    for o in run["outputs"]:
        what = o["path"] or o["plot_id"]
        version = f" v{o['version']}" if o["version"] else ""
        lines.append(f"  {o['kind']:<8} {what}{version}  {o['mime'] or ''}".rstrip())
    return "\n".join(lines)


def packages(env: dict[str, Any]) -> str:
    """Every package of an environment snapshot, one per line: language, name, version."""
    lines = []
    for lang, info in sorted((env.get("languages") or {}).items()):
        for p in info.get("packages") or []:
            lines.append(f"{lang:<7} {p['name']:<32} {p['version']}")
    return "\n".join(lines)


async def _workspace_id(hub: HubClient, workspace: str, project: str) -> str:
    return str((await hub.find_workspace(workspace, project))["id"])


async def list_runs(
    url: str,
    token: str,
    workspace: str,
    project: str,
    path: str | None,
    limit: int,
    as_json: bool,
) -> int:
    async with HubClient(url, token) as hub:
        runs = await hub.runs(await _workspace_id(hub, workspace, project), path, limit)
    sys.stdout.write(json.dumps(runs, indent=2) if as_json else table(runs))
    sys.stdout.write("\n")
    return 0


async def _full_id(hub: HubClient, wid: str, run_id: str) -> str:
    """A run id from the start of one, as the table shows it."""
    if len(run_id) < 32:
        matches = [r["id"] for r in await hub.runs(wid, limit=500) if r["id"].startswith(run_id)]
        if len(matches) == 1:
            return str(matches[0])
    return run_id


async def rerun(
    url: str,
    token: str,
    workspace: str,
    project: str,
    run_id: str,
    ignore: list[str],
    as_json: bool,
) -> int:
    """``rsparkhub rerun``: 0 reproduced, 1 not reproduced (errors exit 2 in the caller)."""
    async with HubClient(url, token, agent="rsparkhub-cli") as hub:
        wid = await _workspace_id(hub, workspace, project)
        report = await hub.rerun(wid, await _full_id(hub, wid, run_id), ignore)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        from rsparkhub.reprodiff import report_text

        sys.stdout.write(
            f"re-ran {report['command']} ({report['run_id'][:12]}) as {report['rerun_id'][:12]} "
            f"in workspace '{report['workspace']}' (project reruns)\n"
        )
        sys.stdout.write(report_text(report) + "\n")
        for note in report.get("notes", []):
            sys.stdout.write(f"  note: {note}\n")
    return 0 if report["reproduced"] else 1


async def export(
    url: str, token: str, workspace: str, project: str, run_id: str | None, output: str | None
) -> int:
    """``rsparkhub export``: write the bundle zip."""
    async with HubClient(url, token, agent="rsparkhub-cli") as hub:
        wid = await _workspace_id(hub, workspace, project)
        full = await _full_id(hub, wid, run_id) if run_id else None
        data = await hub.export(wid, full)
    name = output or f"{workspace}-{full[:12] if full else 'runs'}.zip"
    with open(name, "wb") as f:
        f.write(data)
    sys.stdout.write(f"wrote {name} ({len(data)} bytes): unzip it and run python3 rerun.py\n")
    return 0


async def show_run(
    url: str,
    token: str,
    workspace: str,
    project: str,
    run_id: str,
    as_json: bool,
    with_packages: bool = False,
) -> int:
    async with HubClient(url, token) as hub:
        wid = await _workspace_id(hub, workspace, project)
        run = await hub.run_record(wid, await _full_id(hub, wid, run_id))
        env = await hub.run_environment(wid, run["id"]) if with_packages else None
    if as_json:
        sys.stdout.write(json.dumps({**run, "packages": env} if env else run, indent=2))
    else:
        sys.stdout.write(details(run) + (f"\npackages\n{packages(env)}" if env else ""))
    sys.stdout.write("\n")
    return 0
