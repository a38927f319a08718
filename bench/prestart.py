"""The kernel started with the session: what a user gains when a session's agent starts
("prestarts") the kernel of the workspace's most recently changed script or document
(``.R``/``.Rmd``/``.qmd`` → R, ``.py``/``.ipynb`` → Python, ``.sh`` → bash) as soon as the
hub has put the workspace's files, instead of on the first request
(``session_prestart_kernel``; ``agent/prestart.py``, ``hub/files.latest_language``).

Two hubs side by side (no Spark, no user databases: nothing else starts with a session),
one with the prestart (the default) and one with ``session_prestart_kernel = false`` (the
kernel starts on the first request, as before), taking turns in an order that alternates
every round so that machine load drifts over both alike. For Python and R, every run is a
fresh workspace holding one script (``analysis.py`` / ``analysis.R``, a line of code).

Two cases, each a fresh workspace and session:

1. **immediate**: attach (which starts the session) and send ``1+1`` at once; wall time
   from the start of attach to that request's ``done`` event. The request and the
   prestart race for the same kernel, so no gain is expected here (nor a cost).
2. **after a pause**: attach, wait ``PAUSE_S`` (a user reading their code; nothing sent),
   then the wall time of ``1+1`` alone until its ``done`` event. Here the prestarted
   kernel should already be up.

The session is stopped after every run. One untimed run on each hub comes first for each
language (disk cache, R package loading). Every loop is bounded in count and time.

Usage: .venv/bin/python bench/prestart.py [--n 5] [--json OUT] [--record]
       (--record writes its section of bench/RESULTS.md)
       .venv/bin/python bench/prestart.py --report OUT.json [--record]   (tables of an
       earlier run)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _hub import (  # noqa: E402
    Deadline,
    HubClient,
    P,
    fmt_ms,
    new_workspace,
    recorded_main,
    run_ok,
    running_hub,
    stats,
    table,
)

TITLE = "12. Kernel started with the session (`bench/prestart.py`)"
HUB_ENV = {"RSPARKHUB_SPARK": "off", "RSPARKHUB_USER_DATABASES": "off"}
BUDGET_S = 1200.0
RUN_TIMEOUT = 120.0
PAUSE_S = 3.0
LANGUAGES: tuple[P.Language, ...] = ("python", "r")
KINDS = ("ahead", "on_request")  # the hub with the prestart, the hub without
CASES = ("immediate", "pause")
HUB_OFF = {**HUB_ENV, "RSPARKHUB_SESSION_PRESTART_KERNEL": "false"}
CASE_LABEL = {"immediate": "immediate", "pause": f"after a {PAUSE_S:.0f} s pause"}
SCRIPTS: dict[str, dict[str, bytes]] = {
    "python": {"analysis.py": b"x = sum(range(10))\n"},
    "r": {"analysis.R": b"x <- sum(1:10)\n"},
}


async def one_run(client: HubClient, language: P.Language, case: str) -> float:
    """A fresh workspace with a script: the seconds to the first ``1+1`` of ``case``."""
    wid = await new_workspace(client, f"prestart-{language}")
    await client.upload(wid, SCRIPTS[language])
    try:
        t0 = time.perf_counter()
        async with client.attach(wid) as att:
            if case == "pause":
                await asyncio.sleep(PAUSE_S)
                t0 = time.perf_counter()
            await run_ok(att, "1+1", language, RUN_TIMEOUT)
            return time.perf_counter() - t0
    finally:
        await client.stop_session(wid)


async def bounded_run(
    client: HubClient, language: P.Language, kind: str, case: str, budget: Deadline
) -> float:
    budget.check(f"{language} {kind} {case}")
    limit = min(RUN_TIMEOUT + PAUSE_S + 30, max(budget.left(), 1.0))
    return await asyncio.wait_for(one_run(client, language, case), limit)


async def measure(n: int, budget: Deadline) -> dict[str, Any]:
    runs: dict[str, dict[str, dict[str, list[float]]]] = {
        lang: {case: {kind: [] for kind in KINDS} for case in CASES} for lang in LANGUAGES
    }
    with running_hub(HUB_ENV) as on, running_hub(HUB_OFF) as off:
        async with (
            HubClient(on.url, on.make_user("bench"), timeout=RUN_TIMEOUT) as with_prestart,
            HubClient(off.url, off.make_user("bench"), timeout=RUN_TIMEOUT) as without,
        ):
            clients = {"ahead": with_prestart, "on_request": without}
            for lang in LANGUAGES:
                for kind in KINDS:  # untimed warm-up
                    await bounded_run(clients[kind], lang, kind, "immediate", budget)
                for r in range(n):
                    for case in CASES:
                        for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                            took = await bounded_run(clients[kind], lang, kind, case, budget)
                            runs[lang][case][kind].append(took)
    return {"n": n, "pause_s": PAUSE_S, "runs": runs}


def _cell(xs: list[float]) -> str:
    s = stats(xs)
    return f"{fmt_ms(s['median'])} ({fmt_ms(s['min'])}–{fmt_ms(s['max'])})"


def report(data: dict[str, Any]) -> str:
    rows = []
    for lang in LANGUAGES:
        for case in CASES:
            plain = data["runs"][lang][case]["on_request"]
            ahead = data["runs"][lang][case]["ahead"]
            m_plain, m_ahead = stats(plain)["median"], stats(ahead)["median"]
            rows.append(
                [
                    lang,
                    CASE_LABEL[case],
                    _cell(plain),
                    _cell(ahead),
                    f"{m_ahead / m_plain:.2f}",
                    fmt_ms(m_plain - m_ahead),
                ]
            )
    n_runs = sum(len(xs) for by_case in data["runs"].values() for d in by_case.values()
                 for xs in d.values())  # fmt: skip
    return (
        "**First `1+1` of a new session**, wall time at the client until its `done` event, "
        "median (min–max); *immediate*: from the start of attach, `1+1` sent at once; "
        f"*after a pause*: `1+1` alone, sent {data['pause_s']:.0f} s after attaching. "
        "Every workspace holds `analysis.py` / `analysis.R`; two hubs side by side, "
        "*kernel started ahead* (the default) and *on first request* "
        f"(`session_prestart_kernel = false`). N={data['n']} per cell, the hubs taking "
        f"turns in an order that alternates every round, after one untimed run on each hub "
        f"per language; {n_runs} timed runs in all, a fresh workspace and session each.\n\n"
        + table(
            [
                "lang",
                "case",
                "kernel on first request",
                "kernel started ahead",
                "ratio",
                "saved (medians)",
            ],  # fmt: skip
            rows,
        )
    )


def main() -> None:
    recorded_main(__doc__ or "", TITLE, "bench/prestart.py", measure, report, n=5,
                  budget_s=BUDGET_S)  # fmt: skip


if __name__ == "__main__":
    main()
