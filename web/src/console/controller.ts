// The console's side of the session: turns stream events into output lines, echoes and
// sends what the user runs, follows renders, and passes help requests on.
import type { HelpRequest, Language, SessionEvent } from "../contract";
import { Emitter } from "../core/emitter";
import type { ExecMode } from "../core/messages";
import type { SessionClient } from "../core/session";
import type { SessionStream } from "../core/stream";
import { LANGUAGE_LABEL } from "../core/workspace";
import { ConsoleModel } from "./model";

export interface ConsoleHooks {
  openHelp(req: HelpRequest): void;
  openInViewer(path: string): void;
  notify(message: string, kind?: "info" | "error"): void;
}

const PROMPTS: Record<Language, [string, string]> = {
  r: ["> ", "+ "],
  python: [">>> ", "... "],
  bash: ["$ ", "> "],
};

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
      } else if (msg.type === "protocol_error" && (!msg.request_id || session.isMine(msg.request_id))) {
        this.model.block("error", msg.message);
        this.changed.emit();
      }
    });
  }

  // What ran is echoed from the stream's `input` events (not when sending), so every
  // client — and this one after a reload — shows the same transcript.
  execute(code: string, language: Language): void {
    this.session.send({ type: "execute", code, language, mode: "console" });
  }

  runFile(path: string, mode: Exclude<ExecMode, "console">): void {
    this.session.send({ type: "execute", path, mode });
  }

  render(path: string): void {
    this.renders.set(this.session.send({ type: "render", path }), path);
  }

  interrupt(): void {
    this.session.send({ type: "interrupt" });
  }

  restart(language: Language): void {
    this.info(`Restarting ${LANGUAGE_LABEL[language]}…`);
    this.session.send({ type: "restart", language });
  }

  clear(): void {
    this.model.clear();
    this.changed.emit();
  }

  private info(text: string): void {
    this.model.block("info", text);
    this.changed.emit();
  }

  private onEvent(ev: SessionEvent): void {
    const m = this.model;
    switch (ev.type) {
      case "input":
        this.onInput(ev);
        break;
      case "stream":
        m.write(ev.name === "stderr" ? "stderr" : "stdout", String(ev.text ?? ""));
        break;
      case "result": {
        const text = resultText((ev.data ?? {}) as Record<string, unknown>);
        if (text !== null) m.block("result", text);
        break;
      }
      case "error": {
        const tb = Array.isArray(ev.traceback) ? ev.traceback.map(String) : [];
        m.block("error", tb.length ? tb.join("\n") : `${ev.ename}: ${ev.evalue}`);
        break;
      }
      case "plot":
        if (typeof ev.url === "string") {
          m.plot({ url: ev.url, mime: String(ev.mime ?? "image/png"), width: ev.width, height: ev.height }, "Plot");
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
        if (ev.state === "dead") {
          const name = LANGUAGE_LABEL[ev.language as Language] ?? String(ev.language);
          m.block("error", `The ${name} kernel died${ev.message ? `: ${ev.message}` : "."}`);
        }
        break;
      case "document":
        m.block("info", `Rendered ${ev.path} → ${ev.output}`);
        if (this.session.isMine(ev.request_id)) this.hooks.openInViewer(String(ev.output));
        break;
      case "help":
        if (this.session.isMine(ev.request_id)) this.openHelp(ev);
        return;
      default:
        return;
    }
    this.changed.emit();
  }

  private onInput(ev: SessionEvent): void {
    const by = this.session.isMine(ev.request_id) ? "" : ` (${String(ev.user ?? "someone")})`;
    const language = (ev.language ?? "r") as Language;
    if (ev.mode === "console" && typeof ev.code === "string") {
      this.model.block("echo", echo(ev.code, language) + (ev.truncated ? "\n…" : ""));
      if (by) this.model.block("info", `ran by${by.replace(/[()]/g, "")}`);
    } else {
      const verb = ev.mode === "source" ? "Sourcing" : ev.mode === "render" ? "Rendering" : "Running";
      this.model.block("info", `${verb} ${String(ev.path ?? "")}${ev.mode === "render" ? "…" : ""}${by}`);
    }
  }

  private onDone(ev: SessionEvent): void {
    if (ev.status === "aborted") this.model.block("info", "Interrupted.");
    else if (ev.status === "failed" || (ev.status === "error" && ev.message)) {
      this.model.block("error", String(ev.message ?? ev.error_code ?? "The request failed."));
    }
    const rendered = typeof ev.request_id === "string" ? this.renders.get(ev.request_id) : undefined;
    if (rendered !== undefined) {
      this.renders.delete(ev.request_id as string);
      if (ev.status !== "ok") this.hooks.notify(`Rendering ${rendered} failed; the console shows why.`, "error");
    }
  }

  private openHelp(ev: SessionEvent): void {
    const language = ev.language === "python" ? "python" : "r";
    if (ev.kind === "search") this.hooks.openHelp({ language, query: String(ev.query ?? "") });
    else this.hooks.openHelp({ language, topic: String(ev.topic ?? ""), package: ev.package ?? null });
  }
}
