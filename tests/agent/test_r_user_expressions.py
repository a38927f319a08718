"""IRkernel with r/reply.R answers ``user_expressions`` as ipykernel does: evaluated after
the code when it succeeded, each result in the reply (a real IRkernel, through
jupyter_client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from jupyter_client.manager import start_new_async_kernel

from rsparkhub.agent.modes import R_INIT

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ir() -> AsyncIterator[Any]:
    km, kc = await start_new_async_kernel(kernel_name="ir", startup_timeout=120)
    try:
        reply = await kc.execute(R_INIT, silent=True, reply=True, timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        yield kc
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def _execute(kc: Any, code: str, exprs: dict[str, str]) -> dict[str, Any]:
    """The reply, once the kernel is idle again: after an error IRkernel aborts whatever
    reaches it before its idle (as the agent, the next request waits for idle)."""
    reply = await kc.execute(code, user_expressions=exprs, reply=True, timeout=60)
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        if (
            msg["parent_header"].get("msg_id") == reply["parent_header"]["msg_id"]
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            return dict(reply["content"])


async def test_expressions_are_evaluated_after_the_code(ir: Any) -> None:
    got = await _execute(ir, "x <- 41; x <- x + 1", {"double": "x * 2", "bad": "stop('no')"})
    assert got["status"] == "ok"
    exprs = got["user_expressions"]
    assert exprs["double"] == {
        "status": "ok", "data": {"text/plain": "[1] 84"}, "metadata": {}
    }  # fmt: skip
    assert exprs["bad"]["status"] == "error" and exprs["bad"]["evalue"] == "no"


async def test_a_failing_execution_evaluates_none(ir: Any) -> None:
    got = await _execute(ir, "y <- 1; stop('boom')", {"y": "y"})
    assert got["status"] == "error" and "boom" in got["evalue"]
    assert not got.get("user_expressions")


async def test_requests_without_expressions_and_output_are_unchanged(ir: Any) -> None:
    reply = await ir.execute("print(1:3)", reply=True, timeout=60)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["user_expressions"] == {}
    # the output of the code is its own (the expressions print nothing into it)
    seen: list[str] = []
    msg_id = ir.execute("cat('a\\n')", user_expressions={"z": "cat('leak\\n'); 5"})
    while True:
        msg = await ir.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert "".join(seen) == "a\n"
