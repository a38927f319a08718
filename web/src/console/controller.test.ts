import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SessionClient } from "../core/session";
import { fakeStream } from "../core/testing";
import { ConsoleController, echo, isServiceNotice, resultText } from "./controller";

function setup() {
  const { stream, sockets } = fakeStream();
  const client = new SessionClient(stream);
  const hooks = { openHelp: vi.fn(), openInViewer: vi.fn(), openPlot: vi.fn(), notify: vi.fn() };
  const c = new ConsoleController(client, stream, hooks);
  stream.start();
  const sock = sockets[0];
  sock.welcome("S1");
  const lines = () => {
    const out: string[] = [];
    for (let i = 0; i < c.model.length; i++) out.push(`${c.model.line(i).kind}:${c.model.line(i).text}`);
    return out;
  };
  return { c, sock, hooks, lines, client };
}

describe("ConsoleController", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("sends what is run and echoes it from the stream's input event", () => {
    const { c, sock, lines } = setup();
    c.execute("f <- function() {\n  1\n}", "r");
    expect(lines()).toEqual([]);
    const req = sock.requests()[0];
    expect(req).toMatchObject({ type: "execute", code: "f <- function() {\n  1\n}", language: "r", mode: "console" });
    sock.event("S1", { type: "input", request_id: req.id, user: "me", language: "r", mode: "console", code: req.code });
    expect(lines()).toEqual(["echo:> f <- function() {", "echo:+   1", "echo:+ }"]);
  });

  it("shows what others run, with their name", () => {
    const { sock, lines } = setup();
    sock.event("S1", { type: "input", request_id: "other", user: "bob", language: "python", mode: "console", code: "x = 1" });
    sock.event("S1", { type: "input", request_id: "other2", user: "bob", language: "r", mode: "source", path: "fit.R" });
    expect(lines()).toEqual(["echo:>>> x = 1", "info:ran by bob", "info:Sourcing fit.R (bob)"]);
  });

  it("shows streams, results, errors, plots and failures", () => {
    const { sock, lines, c } = setup();
    sock.event("S1", { type: "stream", name: "stdout", text: "a\nb" });
    sock.event("S1", { type: "stream", name: "stdout", text: "c\n" });
    sock.event("S1", { type: "stream", name: "stderr", text: "warn\n" });
    sock.event("S1", { type: "result", data: { "text/plain": "[1] 2", "text/html": "<b>2</b>" } });
    sock.event("S1", { type: "error", ename: "E", evalue: "bad", traceback: [] });
    sock.event("S1", { type: "plot", plot_id: "p1", mime: "image/png", url: "/api/workspaces/w/plots/p1" });
    sock.event("S1", { type: "done", request_id: "x", status: "failed", message: "Python is not installed." });
    sock.event("S1", { type: "done", request_id: "y", status: "aborted" });
    expect(lines()).toEqual([
      "stdout:a",
      "stdout:bc",
      "stderr:warn",
      "result:[1] 2",
      "error:E: bad",
      "plot:Plot",
      "error:Python is not installed.",
      "info:Interrupted.",
    ]);
    expect(c.model.line(5).plot?.url).toBe("/api/workspaces/w/plots/p1");
  });

  it("opens help and rendered documents only for its own requests", () => {
    const { c, sock, hooks, client } = setup();
    sock.event("S1", { type: "help", request_id: "someone-else", language: "r", kind: "topic", topic: "mean" });
    expect(hooks.openHelp).not.toHaveBeenCalled();
    const id = client.send({ type: "execute", code: "?mean", language: "r", mode: "console" });
    sock.event("S1", { type: "help", request_id: id, language: "r", kind: "topic", topic: "mean", package: "base" });
    expect(hooks.openHelp).toHaveBeenCalledWith({ language: "r", topic: "mean", package: "base" });
    c.render("report.Rmd");
    const render = sock.requests().find((r) => r.type === "render");
    expect(render).toMatchObject({ path: "report.Rmd" });
    sock.event("S1", { type: "document", request_id: render?.id, path: "report.Rmd", output: "report.html", format: "html", engine: "knitr" });
    expect(hooks.openInViewer).toHaveBeenCalledWith("report.html");
    sock.event("S1", { type: "done", request_id: render?.id, status: "ok" });
    expect(hooks.notify).not.toHaveBeenCalled();
  });

  it("says when a render fails and when a new session starts", () => {
    const { c, sock, hooks, lines } = setup();
    c.render("bad.Rmd");
    const id = sock.requests()[0].id;
    sock.event("S1", { type: "done", request_id: id, status: "error" });
    expect(hooks.notify).toHaveBeenCalledWith(expect.stringContaining("bad.Rmd"), "error");
    sock.event("S1", { type: "session", state: "stopped", message: "stopped by alice" });
    sock.welcome("S2");
    expect(lines().slice(-2)).toEqual(["info:Session stopped: stopped by alice", "info:— a new session started —"]);
  });

  it("shows a file that code wrote but the workspace did not save", () => {
    const { sock, lines } = setup();
    sock.event("S1", { type: "file_refused", path: "out/big.csv", error_code: "quota_exceeded", message: "The workspace is over its quota." });
    expect(lines()).toEqual(["error:'out/big.csv' was not saved: The workspace is over its quota."]);
  });

  it("says so when a request cannot be queued, and keeps the code", () => {
    const { c, sock, hooks, lines } = setup();
    sock.drop(); // reconnecting: requests wait in the stream's outbox
    for (let i = 0; i < 200; i++) expect(c.execute(`x <- ${i}`, "r")).toBe(true);
    expect(c.execute("x <- 200", "r")).toBe(false);
    expect(lines()).toEqual([expect.stringMatching(/^error:Not sent: 200 requests are already waiting/)]);
    expect(hooks.notify).toHaveBeenCalledWith(expect.stringMatching(/^Not sent/), "error");
    c.render("report.Rmd");
    expect(lines()).toHaveLength(2);
  });

  it("formats echoes and results", () => {
    expect(echo("print(1)\n", "python")).toBe(">>> print(1)");
    expect(echo("ls\npwd", "bash")).toBe("$ ls\n> pwd");
    expect(resultText({ "text/html": "<p>a <b>b</b></p><script>x()</script>" })).toBe("a b");
    expect(resultText({ "application/json": {} })).toBe("[application/json]");
  });

  it("keeps a plot's id with its line and opens it in the Plots pane", () => {
    const { c, sock, hooks } = setup();
    sock.event("S1", { type: "plot", request_id: "r", plot_id: "p9", mime: "image/png", url: "/api/workspaces/w/plots/p9" });
    const line = c.model.line(c.model.length - 1);
    expect(line.kind).toBe("plot");
    expect(line.plot?.id).toBe("p9");
    c.openPlot("p9");
    expect(hooks.openPlot).toHaveBeenCalledWith("p9");
  });

  it("says when a restarted kernel is ready again (also when someone else restarted it)", () => {
    const { c, sock, lines } = setup();
    c.restart("r");
    sock.event("S1", { type: "status", language: "r", state: "restarting" });
    sock.event("S1", { type: "status", language: "r", state: "idle" });
    sock.event("S1", { type: "status", language: "r", state: "busy" });
    sock.event("S1", { type: "status", language: "r", state: "idle" });
    sock.event("S1", { type: "status", language: "python", state: "restarting" });
    sock.event("S1", { type: "status", language: "python", state: "idle" });
    expect(lines()).toEqual(["info:Restarting R…", "info:R is ready again.", "info:Restarting Python…", "info:Python is ready again."]);
  });

  it("keeps the notices of services a session goes without, once per session", () => {
    const { sock, lines } = setup();
    const db = "No PostgreSQL database in this session (PGHOST, PGUSER … are not set): initdb missing. An administrator …";
    const spark = "No Spark in this session (SPARK_REMOTE is not set): Spark is not available on this hub. …";
    for (const message of ["starting a session (local spawner)", db, spark, db, "the session is ready"]) {
      sock.receive({ type: "session_state", session_id: "S1", state: "starting", message });
    }
    expect(lines()).toEqual([`info:${db}`, `info:${spark}`]);
    expect(isServiceNotice("No Spark driver of 'bob' is running right now")).toBe(false);
    // a declared environment's build progress and failure stay in the console too
    expect(isServiceNotice("environment (python):  + six==1.16.0")).toBe(true);
    expect(isServiceNotice("No R environment in this session: DESCRIPTION declares x …")).toBe(true);
    expect(isServiceNotice("No package overlay in this session (pip install …): …")).toBe(true);
    expect(isServiceNotice("environment variables were read")).toBe(false);
  });

  it("shows a render's log as plain text, its failure as an error", () => {
    const { sock, lines } = setup();
    sock.event("S1", { type: "input", request_id: "rr", user: "bob", mode: "render", path: "report.Rmd" });
    sock.event("S1", { type: "stream", request_id: "rr", name: "stderr", text: "processing file: report.Rmd\n" });
    sock.event("S1", { type: "error", request_id: "rr", ename: "RenderError", evalue: "boom", traceback: [] });
    sock.event("S1", { type: "done", request_id: "rr", status: "error" });
    sock.event("S1", { type: "stream", request_id: "other", name: "stderr", text: "warning\n" });
    expect(lines()).toEqual([
      "info:Rendering report.Rmd… (bob)",
      "stdout:processing file: report.Rmd",
      "error:RenderError: boom",
      "stderr:warning",
    ]);
  });
});
