// One open workspace: its session stream, request client and a summary of the session's
// state for the indicators (connection, session state per language, who is attached).
import type { Api, Language } from "../contract";
import { Emitter } from "./emitter";
import { SessionClient } from "./session";
import { SessionStream, workspaceSocketUrl, type ConnectionStatus, type StreamOptions } from "./stream";

export const ALL_LANGUAGES: Language[] = ["r", "python", "bash"];
export const LANGUAGE_LABEL: Record<Language, string> = { r: "R", python: "Python", bash: "Bash" };

export interface SessionView {
  connection: ConnectionStatus;
  /** starting, running, stopping, stopped, dead — or unknown before the first welcome */
  state: string;
  message: string | null;
  kernels: Partial<Record<Language, string>>;
  /** the languages the session offers (all three until it says) */
  languages: Language[];
  users: string[];
  /** the profile the session runs (or last ran) with, once the session info says */
  profile: string | null;
}

const isLanguage = (x: unknown): x is Language => x === "r" || x === "python" || x === "bash";

export class WorkspaceSession {
  readonly stream: SessionStream;
  readonly client: SessionClient;
  readonly changed = new Emitter<[SessionView]>();
  view: SessionView = {
    connection: { state: "connecting" },
    state: "unknown",
    message: null,
    kernels: {},
    languages: ALL_LANGUAGES,
    users: [],
    profile: null,
  };

  constructor(
    readonly workspaceId: string,
    private readonly api: Api,
    streamOptions?: Partial<StreamOptions>,
  ) {
    this.stream = new SessionStream({ url: workspaceSocketUrl(workspaceId), ...streamOptions });
    this.client = new SessionClient(this.stream);
    this.stream.onStatus((connection) => this.update({ connection }));
    this.stream.onMessage((msg, newSession) => {
      if (msg.type === "welcome") {
        this.update({ state: msg.state, ...(newSession ? { kernels: {}, message: null } : {}) });
        void this.loadInfo();
      } else if (msg.type === "session_state") {
        this.update({ state: msg.state, message: msg.message ?? null });
        if (msg.state === "running") void this.loadInfo();
      } else if (msg.type === "presence") {
        this.update({ users: msg.users });
      }
    });
    this.stream.subscribe((ev) => {
      if (ev.type === "status" && isLanguage(ev.language)) {
        this.update({ kernels: { ...this.view.kernels, [ev.language]: String(ev.state) } });
      } else if (ev.type === "session") {
        const langs = Array.isArray(ev.languages) ? ev.languages.filter(isLanguage) : [];
        this.setLanguages(langs);
        if (ev.state === "stopped" || ev.state === "dead") {
          this.update({ state: String(ev.state), message: ev.message ?? null, kernels: {} });
        }
      }
    });
  }

  start(): void {
    this.stream.start();
  }

  stop(): void {
    this.stream.stop();
  }

  /** Attach to the workspace's current session now (after it was stopped and started
   * over REST, e.g. with another profile: the socket follows a new session only when
   * it next connects). */
  reattach(reason = "the session was restarted"): void {
    this.stream.reconnectNow(reason);
  }

  private async loadInfo(): Promise<void> {
    try {
      const info = await this.api.get<{ languages?: unknown[]; profile?: unknown } | null>(
        `/api/workspaces/${this.workspaceId}/session`,
      );
      this.setLanguages((info?.languages ?? []).filter(isLanguage));
      // null while a session starts (its spawner has not said yet): keep what is known
      if (typeof info?.profile === "string" && info.profile !== this.view.profile) this.update({ profile: info.profile });
    } catch {
      // keep what is known
    }
  }

  private setLanguages(langs: Language[]): void {
    if (langs.length && langs.join() !== this.view.languages.join()) this.update({ languages: langs });
  }

  private update(part: Partial<SessionView>): void {
    this.view = { ...this.view, ...part };
    this.changed.emit(this.view);
  }
}
