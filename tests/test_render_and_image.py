"""Documents rendered through the hub (a clean process by default, the session's own R
environment on request, ``rsparkhub render`` from the command line) and the saved R image
(``save_r_image``: .RData on a clean stop, restored on the next start)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess

REPORT = """---
title: "Cars"
output: html_document
---

```{r setup}
fit <- lm(dist ~ speed, data = cars)
```

The slope is `r round(coef(fit)[[2]], 3)`.

```{r plot}
plot(cars)
abline(fit)
```

```{r table}
summary(cars$dist)
```
"""

BROKEN = """---
title: "Broken"
---

```{r fine}
x <- 1
```

```{r explode}
stop("this chunk fails")
```
"""


async def _collect(s: object, **kw: object) -> list[P.Event]:
    return [ev async for ev in s.render(**kw)]  # type: ignore[attr-defined]


async def test_render_rmd_in_clean_process_and_in_session(
    shared_hub: HubProcess, alice: str
) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = str((await c.ensure_workspace(f"doc-{uuid.uuid4().hex[:8]}"))["id"])
        await c.upload(wid, {"report.Rmd": REPORT.encode(), "broken.Rmd": BROKEN.encode()})
        async with c.attach(wid) as s:
            # the session's own variables are not visible to a clean render
            r = await s.run("fit <- 'not a model'", language="r")
            assert r.ok
            events = await _collect(s, path="report.Rmd")
            done = events[-1]
            assert isinstance(done, P.DoneEvent) and done.status == "ok", events
            [doc] = [e for e in events if isinstance(e, P.DocumentEvent)]
            assert doc.output == "report.html" and doc.engine == "rmarkdown"
            assert any(isinstance(e, P.StreamEvent) for e in events)  # the render log
            html = (await c.read_file(wid, "report.html")).decode()
            assert "The slope is 3.932." in html
            assert "data:image/png;base64," in html
            assert "Min." in html and "120" in html  # summary(cars$dist)
            files = {f["path"] for f in await c.list_files(wid)}
            assert files == {"report.Rmd", "broken.Rmd", "report.html"}
            r = await s.run("fit", language="r")
            assert r.results[0].data["text/plain"] == '[1] "not a model"'

            # a failing chunk is named, with its line; the session keeps working
            events = await _collect(s, path="broken.Rmd")
            done = events[-1]
            assert isinstance(done, P.DoneEvent) and done.status == "error"
            assert done.error_code == "chunk_failed"
            assert "explode" in (done.message or "") and "line 9" in (done.message or "")
            [err] = [e for e in events if isinstance(e, P.ErrorEvent)]
            assert "explode" in err.evalue
            assert "broken.html" not in {f["path"] for f in await c.list_files(wid)}
            r = await s.run("1 + 1", language="r")
            assert r.ok and r.results[0].data["text/plain"] == "[1] 2"

            # in the session: the document sees the session's objects and leaves its own
            await c.upload(
                wid,
                {
                    "uses.Rmd": b"---\ntitle: uses\n---\n\n```{r}\nmade_here <- answer * 2\n"
                    b"made_here\n```\n"
                },
            )
            await s.run("answer <- 21", language="r")
            events = await _collect(s, path="uses.Rmd", in_session=True, output="out/uses.html")
            assert isinstance(events[-1], P.DoneEvent) and events[-1].status == "ok", events
            assert "[1] 42" in (await c.read_file(wid, "out/uses.html")).decode()
            r = await s.run("made_here", language="r")
            assert r.results[0].data["text/plain"] == "[1] 42"
            env_names = {v["name"] for v in (await c.environment(wid, "r"))["variables"]}
            assert "made_here" in env_names


def test_render_command_writes_the_result_locally(
    shared_hub: HubProcess, alice: str, tmp_path: Path
) -> None:
    doc = tmp_path / "proj" / "notes.Rmd"
    doc.parent.mkdir()
    doc.write_text(REPORT)
    out = tmp_path / "out" / "notes.html"
    env = {"RSPARKHUB_URL": shared_hub.url, "RSPARKHUB_TOKEN": alice}
    proc = _cli(["render", str(doc), "-o", str(out), "--workspace", "cli-render"], env)
    assert proc.returncode == 0, proc.stderr
    assert "data:image/png;base64," in out.read_text()
    assert "Output created:" in proc.stderr
    assert "plot" in proc.stderr  # knitr's progress: the chunk labels
    bad = doc.parent / "bad.Rmd"
    bad.write_text(BROKEN)
    proc = _cli(["render", str(bad), "--workspace", "cli-render"], env)
    assert proc.returncode == 1
    assert "explode" in proc.stderr and not (doc.parent / "bad.html").exists()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    return subprocess.run(
        [sys.executable, "-m", "rsparkhub.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


async def test_saved_r_image_round_trip(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = str((await c.ensure_workspace(f"img-{uuid.uuid4().hex[:8]}"))["id"])
        ws = await c.update_workspace(wid, settings={"save_r_image": True})
        assert ws["settings"] == {"save_r_image": True}
        async with c.attach(wid) as s:
            r = await s.run(
                "kept <- c(a = 1, b = 2); model <- lm(dist ~ speed, cars); "
                "ptr <- new('externalptr')",
                language="r",
            )
            assert r.ok, r.events
        await c.stop_session(wid)
        files = {f["path"] for f in await c.list_files(wid)}
        assert ".RData" in files
        async with c.attach(wid) as s:
            r = await s.run("kept[['b']] + length(coef(model))", language="r")
            assert r.ok and r.results[0].data["text/plain"] == "[1] 4"
            assert "Restored" in r.stdout  # said once, when the R kernel started
        # turned off: nothing is restored any more
        await c.update_workspace(wid, settings={"save_r_image": False})
        await c.stop_session(wid)
        async with c.attach(wid) as s:
            r = await s.run("exists('kept')", language="r")
            assert r.results[0].data["text/plain"] == "[1] FALSE"
