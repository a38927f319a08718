"""Command line of the session agent.

    python -m rsparkhub.agent --hub-url ws://HOST:PORT/agent/ws --session-id SID \
        --workdir DIR [--token-fd FD] [--hub-socket PATH] [--redial-timeout 600] [--max-file-bytes 52428800] [--languages r,python,bash] [--prestart python] [--pool] [--log-level info]

The session token is read from ``--token-fd FD`` (a pipe the local spawner writes it into;
read once, then closed, so no later process can read it) or else from the environment
variable ``RSPARKHUB_SESSION_TOKEN`` (Kubernetes: a Secret), which is removed at once; it is
sent as ``Authorization: Bearer <token>``. The agent makes itself non-dumpable first thing,
so code in the session (same uid) can neither ptrace it nor read its memory or environment. Exit codes: 0 after ``stop``/SIGTERM,
3 when the hub stayed unreachable for ``--redial-timeout`` seconds, 2 for bad arguments,
1 when one of the agent's loops failed unexpectedly (logged with its traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from rsparkhub.agent.main import Agent, AgentConfig
from rsparkhub.protocol import LANGUAGES, Language

TOKEN_ENV = "RSPARKHUB_SESSION_TOKEN"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m rsparkhub.agent", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--hub-url", required=True, help="WebSocket URL of the hub's /agent/ws")
    ap.add_argument("--session-id", required=True)
    ap.add_argument("--workdir", required=True, type=Path, help="the session's working directory")
    ap.add_argument(
        "--redial-timeout",
        type=float,
        default=600.0,
        help="give up (exit 3) after the hub was unreachable this many seconds",
    )
    ap.add_argument(
        "--max-file-bytes",
        type=int,
        default=50 * 1024 * 1024,
        help="files larger than this are not sent to the hub",
    )
    ap.add_argument("--scan-interval", type=float, default=2.0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--languages",
        default=None,
        help="comma-separated subset of r,python,bash to offer (default: every installed kernel)",
    )
    ap.add_argument(
        "--prestart",
        default=None,
        help="comma-separated languages whose kernels start before their first request",
    )
    ap.add_argument("--token-fd", type=int, default=None, help="read the session token from FD")
    ap.add_argument(
        "--pool",
        action="store_true",
        help="a pooled agent: start the --prestart kernels, then wait for the hand-out "
        "(JSON: token, environment) on --token-fd before dialling (agent/handout.py)",
    )
    ap.add_argument(
        "--hub-socket",
        type=Path,
        default=None,
        help="reach the hub through this unix socket (the URL still names the route)",
    )
    ap.add_argument("--log-level", default="info")
    return ap.parse_args(argv)


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: /proc/<agent>/{environ,mem,fd} become root's and ptrace needs
    CAP_SYS_PTRACE, which nothing in a session has. Kernels are exec'd, so they are
    dumpable again (debuggers work on the user's own code)."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_dumpable = 4
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _languages(arg: str | None) -> list[Language] | str | None:
    """A comma-separated language list; a string naming the unknown ones if any."""
    if arg is None:
        return None
    names = [x.strip() for x in arg.split(",") if x.strip()]
    bad = [x for x in names if x not in LANGUAGES]
    return ", ".join(bad) if bad else [x for x in LANGUAGES if x in names]


def main(argv: list[str] | None = None) -> int:
    make_undumpable()
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s agent[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    languages = _languages(args.languages)
    prestart = _languages(args.prestart)
    if isinstance(languages, str) or isinstance(prestart, str):
        print(f"unknown language(s): {languages if isinstance(languages, str) else prestart}",
              file=sys.stderr)  # fmt: skip
        return 2
    token = os.environ.pop(TOKEN_ENV, None)  # not inherited by kernels
    if args.pool and args.token_fd is None:
        print("--pool needs --token-fd", file=sys.stderr)
        return 2
    if args.pool:  # kept open until the hand-out: never inherited by a kernel
        os.set_inheritable(args.token_fd, False)
    if args.token_fd is not None and not args.pool:
        with os.fdopen(args.token_fd, "rb") as fh:
            token = fh.read(4096).decode().strip() or None
    config = AgentConfig(
        hub_url=args.hub_url,
        session_id=args.session_id,
        workdir=args.workdir,
        token=token,
        hub_socket=args.hub_socket,
        redial_timeout=args.redial_timeout,
        max_file_bytes=args.max_file_bytes,
        scan_interval=args.scan_interval,
        languages=languages,
        prestart=prestart,
        handout_fd=args.token_fd if args.pool else None,
    )
    return asyncio.run(Agent(config).run())


if __name__ == "__main__":
    sys.exit(main())
