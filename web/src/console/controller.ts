// The console's side of the session: turns stream events into output lines, echoes and
// sends what the user runs (saying so when it cannot be sent), follows renders, and passes
// help requests on. It also says when a restarted kernel is ready again, keeps the hub's
// notices of services a session starts without, and shows a render's log as plain text.
import type { AnyEvent, HelpRequest, Language } from "../contract";
import { Emitter } from "../core/emitter";
import type { DoneEvent, HelpEvent, InputEvent } from "../generated/protocol";
import type { ExecMode, RequestBody } from "../core/messages";
import type { SessionClient } from "../core/session";
import { OutboxFullError, type SessionStream } from "../core/stream";
import { LANGUAGE_LABEL } from "../core/workspace";
import { ConsoleModel } from "./model";

export interface ConsoleHooks {
  openHelp(req: HelpRequest): void;
  openInViewer(path: string): void;
  openPlot(plotId: string): void;
  notify(message: string, kind?: "info" | "error"): void;
}

const PROMPTS: Record<Language, [string, string]> = {
  r: ["> ", "+ "],
  python: [">>> ", "... "],
  bash: ["$ ", "> "],
};

/** A start message of the hub (session_state) that stays in the console: a service the
 * session goes without (hub/userdb.py, hub/sessions/lifecycle.py spark_missing), a
 * declared environment it goes without, and the progress of building one
 * (hub/environments/). */
export function isServiceNotice(message: string | null | undefined): message is string {
  return (
    typeof message === "string" &&
    (/^No (PostgreSQL database|Spark|Python environment|R environment|package overlay) in this session\b/.test(message) ||
      /^environment \((python|r)\): /.test(message))
  );
}

/** Code as a console shows it typed: a prompt on the first line, continuation after. */
export function echo(code: string, language: Language): string {
  const [first, more] = PROMPTS[language];
  return code
    .replace(/\n+$/, "")
    .split("\n")
    .map((l, i) => (i === 0 ? first : more) + l)
    .join("\n");
}

/** The text to show for a result's MIME bundle: text/plain, else the text of text/html. */
export function resultText(data: Record<string, unknown>): string | null {
  const plain = data["text/plain"];
  if (typeof plain === "string") return plain;
  const html = data["text/html"];
  if (typeof html === "string") {
    const doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("script, style").forEach((el) => el.remove());
    return doc.body.textContent ?? "";
  }
  const keys = Object.keys(data);
  return keys.length ? `[${keys.join(", ")}]` : null;
}

export class ConsoleController {
  readonly model = new ConsoleModel();
  /** the model changed (throttle rendering on the receiving side) */
  readonly changed = new Emitter<[]>();
  private readonly renders = new Map<string, string>();
  /** requests whose stream is a render's log (anyone's: from their `input` events) */
  private readonly renderLogs = new Set<string>();
  /** languages restarting: their next `idle` says the kernel is ready again */
  private readonly restarting = new Set<Language>();
  private readonly restartOf = new Map<string, Language>();
  /** service notices shown, per session (a reconnect does not repeat them) */
  private readonly notices = new Set<string>();
  private sessions = 0;

  constructor(
    private readonly session: SessionClient,
    stream: SessionStream,
    private readonly hooks: ConsoleHooks,
  ) {
    stream.subscribe((ev) => this.onEvent(ev));
    stream.onMessage((msg, newSession) => {
      if (msg.type === "welcome" && newSession) {
        if (this.sessions++ > 0) this.info("— a new session started —");
      } else if (msg.type === "session_state" && isServiceNotice(msg.message)) {
        const key = `${msg.session_id}\n${msg.message}`;
        if (!this.notices.has(key)) {
          this.notices.add(key);
          this.info(msg.message);
        }
      } else if (msg.type === "protocol_error" && (!msg.request_id || session.isMine(msg.request_id))) {
        this.model.block("error", msg.message);
        this.changed.emit();
      }
    });
  }

  // What ran is echoed from the stream's `input` events (not when sending), so every
  // client — and this one after a reload — shows the same transcript.
  /** Whether the code was sent (else the console says why and the caller keeps it). */
  execute(code: string, language: Language): boolean {
    return this.send({ type: "execute", code, language, mode: "console" }) !== null;
  }

  runFile(path: string, mode: Exclude<ExecMode, "console">): void {
    this.send({ type: "execute", path, mode });
  }

  render(path: string): void {
    const id = this.send({ type: "render", path });
    if (id !== null) this.renders.set(id, path);
  }

  interrupt(): void {
    this.send({ type: "interrupt" });
  }

  restart(language: Language): void {
    const id = this.send({ type: "restart", language });
    if (id === null) return;
    this.restartOf.set(id, language);
    if (!this.restarting.has(language)) {
      this.restarting.add(language);
      this.info(`Restarting ${LANGUAGE_LABEL[language]}…`);
    }
  }

  clear(): void {
    this.model.clear();
    this.changed.emit();
  }

  /** The request's id, or null when the stream cannot take it (shown as an error line and
   * a notice: nothing is dropped silently). */
  private send(body: RequestBody): string | null {
    try {
      return this.session.send(body);
    } catch (e) {
      if (!(e instanceof OutboxFullError)) throw e;
      this.model.block("error", e.message);
      this.changed.emit();
      this.hooks.notify(e.message, "error");
      return null;
    }
  }

  private info(text: string): void {
    this.model.block("info", text);
    this.changed.emit();
  }

  private onEvent(ev: AnyEvent): void {
    const m = this.model;
    switch (ev.type) {
      case "input":
        this.onInput(ev);
        break;
      case "stream":
        // a render's log is ordinary text; its failure comes as an `error` event
        m.write(ev.request_id && this.renderLogs.has(ev.request_id) ? "stdout" : ev.name, ev.text);
        break;
      case "result": {
        const text = resultText(ev.data);
        if (text !== null) m.block("result", text);
        break;
      }
      case "error": {
        const tb = ev.traceback ?? [];
        m.block("error", tb.length ? tb.join("\n") : `${ev.ename}: ${ev.evalue}`);
        break;
      }
      case "plot":
        if (typeof ev.url === "string") {
          m.plot({ id: ev.plot_id, url: ev.url, mime: ev.mime ?? "image/png", width: ev.width, height: ev.height }, "Plot");
        }
        break;
      case "done":
        this.onDone(ev);
        break;
      case "session":
        if (ev.state === "stopped" || ev.state === "dead") {
          m.block(ev.state === "dead" ? "error" : "info", `Session ${ev.state}${ev.message ? `: ${ev.message}` : "."}`);
        }
        break;
      case "status":
        this.onStatus(ev.language, ev.state, ev.message);
        break;
      case "document":
        m.block("info", `Rendered ${ev.path} → ${ev.output}`);
        if (this.session.isMine(ev.request_id)) this.hooks.openInViewer(ev.output);
        break;
      case "file_refused":
        m.block("error", `'${ev.path}' was not saved: ${ev.message}`);
        break;
      case "help":
        if (this.session.isMine(ev.request_id)) this.openHelp(ev);
        return;
      case "reply":
      case "env":
      case "view_released":
      case "environment": // a run record's environment: the History pane
        return; // for other parts of the page
      default:
        ev satisfies never; // a new event type: decide whether the console shows it
        return;
    }
    this.changed.emit();
  }

  private onStatus(language: Language, state: string, message?: string | null): void {
    const label = LANGUAGE_LABEL[language];
    if (state === "dead") {
      this.restarting.delete(language);
      this.model.block("error", `The ${label} kernel died${message ? `: ${message}` : "."}`);
    } else if (state === "restarting" && !this.restarting.has(language)) {
      this.restarting.add(language); // someone else restarted it
      this.model.block("info", `Restarting ${label}…`);
    } else if (state === "idle" && this.restarting.delete(language)) {
      this.model.block("info", `${label} is ready again.`);
    }
  }

  private onInput(ev: InputEvent): void {
    if (ev.mode === "render") this.renderLogs.add(ev.request_id);
    const by = this.session.isMine(ev.request_id) ? "" : ` (${ev.user || "someone"})`;
    const language = ev.language ?? "r";
    if (ev.mode === "console" && typeof ev.code === "string") {
      this.model.block("echo", echo(ev.code, language) + (ev.truncated ? "\n…" : ""));
      if (by) this.model.block("info", `ran by${by.replace(/[()]/g, "")}`);
    } else {
      const verb = ev.mode === "source" ? "Sourcing" : ev.mode === "render" ? "Rendering" : "Running";
      this.model.block("info", `${verb} ${ev.path ?? ""}${ev.mode === "render" ? "…" : ""}${by}`);
    }
  }

  private onDone(ev: DoneEvent): void {
    if (ev.status === "aborted") this.model.block("info", "Interrupted.");
    else if (ev.status === "failed" || (ev.status === "error" && ev.message)) {
      this.model.block("error", ev.message ?? ev.error_code ?? "The request failed.");
    }
    this.renderLogs.delete(ev.request_id);
    if (ev.status !== "ok") {
      const lang = this.restartOf.get(ev.request_id);
      if (lang) this.restarting.delete(lang);
    }
    this.restartOf.delete(ev.request_id);
    const rendered = this.renders.get(ev.request_id);
    if (rendered !== undefined) {
      this.renders.delete(ev.request_id);
      if (ev.status !== "ok") this.hooks.notify(`Rendering ${rendered} failed; the console shows why.`, "error");
    }
  }

  /** Show this plot (an inline one was clicked) in the Plots pane. */
  openPlot(plotId: string): void {
    this.hooks.openPlot(plotId);
  }

  private openHelp(ev: HelpEvent): void {
    const language = ev.language === "python" ? "python" : "r";
    if (ev.kind === "search") this.hooks.openHelp({ language, query: ev.query ?? "" });
    else this.hooks.openHelp({ language, topic: ev.topic ?? "", package: ev.package ?? null });
  }
}
