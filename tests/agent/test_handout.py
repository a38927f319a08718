"""The hand-out a pooled agent reads (agent/handout.py): validated, and turned into the
code that resets a kernel's environment; tests/agent/test_warm_pool.py runs it for real."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rsparkhub.agent import handout


def test_the_hand_out_line_is_validated() -> None:
    good = handout.parse(b'{"token": "t", "env": {"A_1": "x"}, "prestart": ["r"]}\n')
    assert (good.token, good.env, good.prestart) == ("t", {"A_1": "x"}, ["r"])
    for bad in (
        b"not json",
        b'{"env": {}}',
        b'{"token": ""}',
        b'{"token": "t", "env": {"1A": "x"}}',
        b'{"token": "t", "env": {"A": 1}}',
        b'{"token": "t", "env": {"A": "x\\u0000"}}',
        b'{"token": "t", "prestart": ["cobol"]}',
        b"[1]",
    ):
        with pytest.raises(handout.HandoutError):
            handout.parse(bad)


def test_an_r_kernel_restarts_only_for_files_it_reads_at_start() -> None:
    assert handout.restart_for("r", {".Rprofile": "x"})
    assert handout.restart_for("r", {".RData": "x"})
    assert not handout.restart_for("r", {"a.R": "x"})
    assert not handout.restart_for("python", {".Rprofile": "x"})


def output(argv: list[str], env: dict[str, str]) -> str:
    """stdout of ``argv`` run with only ``env`` (and a PATH)."""
    return subprocess.run(
        argv, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, check=True
    ).stdout


def test_the_python_reset_puts_the_new_path_before_the_standard_library() -> None:
    """What a kernel started with PYTHONPATH would have (run in a fresh interpreter)."""
    changed, removed = handout.changes(
        {"KEEP": "1", "GONE": "x"}, {"KEEP": "1", "PYTHONPATH": "/overlay/python", "NEW": "y"}
    )
    assert (changed, removed) == ({"PYTHONPATH": "/overlay/python", "NEW": "y"}, ["GONE"])
    code = handout.reset_code("python", changed, removed)
    probe = (
        "import json, os, sys\n" + code + "\n"
        "print(json.dumps([sys.path, os.environ.get('NEW'), 'GONE' in os.environ]))"
    )
    path, new, gone = json.loads(output([sys.executable, "-c", probe], {"GONE": "x"}))
    cold = output(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        {"PYTHONPATH": "/overlay/python"},
    )
    assert path == json.loads(cold)
    assert (new, gone) == ("y", False)


def test_the_r_and_bash_resets_quote_what_they_set() -> None:
    r = handout.reset_code("r", {"A": 'say "hi"\\'}, ["B"])
    out = output(
        ["Rscript", "-e", r + '\ncat(Sys.getenv("A"), Sys.getenv("B", "unset"), sep = "|")'],
        {"B": "x"},
    )
    assert out == 'say "hi"\\|unset'
    sh = handout.reset_code("bash", {"A": "it's $(not run)"}, ["B"])
    out = output(["bash", "-c", sh + '\nprintf %s "$A|${B-unset}"'], {"B": "x"})
    assert out == "it's $(not run)|unset"
