// The contract between the app shell (core: src/core/, src/app/) and the panes
// (src/panes/). The shell owns the session socket, the REST client, layout and routing;
// a pane gets a PaneContext and renders one area of the workspace view. The wire types
// come from the protocol (generated/protocol.ts); the rest is the client's own.
import type { Event as ProtocolEvent, Language } from "./generated/protocol";

export type { Language } from "./generated/protocol";

/** One event of the session stream (docs/protocol.md: the ``event`` of an envelope) —
 * protocol.py's ``Event`` union, named AnyEvent here because ``Event`` is the DOM's. */
export type AnyEvent = ProtocolEvent;

/** An error answer of the hub: {"error": {"code", "message"}} with its HTTP status. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>;

/** REST calls to the hub with the browser's cookie (+ CSRF header for writes). JSON in and
 * out; non-2xx answers throw ApiError. ``url`` builds an absolute same-origin URL (for
 * <img src>, <iframe src>, downloads). */
export interface Api {
  get<T = unknown>(path: string, query?: Query): Promise<T>;
  post<T = unknown>(path: string, body?: unknown, query?: Query): Promise<T>;
  put<T = unknown>(path: string, body?: unknown, query?: Query): Promise<T>;
  patch<T = unknown>(path: string, body?: unknown, query?: Query): Promise<T>;
  del<T = unknown>(path: string, query?: Query): Promise<T>;
  /** raw bytes (e.g. a re-rendered plot) */
  blob(path: string, query?: Query): Promise<Blob>;
  url(path: string, query?: Query): string;
}

/** Every event of the workspace's stream, in order and exactly once (also those replayed
 * when the page attaches: a pane that subscribes late gets only new ones, so it loads its
 * current state from the REST API when it mounts). ``seq`` is the stream position. */
export interface EventBus {
  subscribe(fn: (ev: AnyEvent, seq: number) => void): () => void;
}

export interface HelpRequest {
  language: "r" | "python";
  topic?: string;
  package?: string | null;
  query?: string; // a help search instead of a topic
}

export interface DataViewRequest {
  language: "r" | "python";
  name?: string;
  expr?: string;
}

export interface PaneContext {
  workspaceId: string;
  api: Api;
  events: EventBus;
  canWrite: boolean;
  /** languages the session offers (from the session info), e.g. ["r", "python", "bash"] */
  languages: Language[];
  /** the console's language (the Environment pane follows it unless pinned) */
  consoleLanguage: Language;
  /** the session's state as the shell knows it (the console's indicator): starting,
   * running, stopping, stopped, dead, unknown */
  sessionState: string;
  /** show the Help pane with this topic or search */
  openHelp(req: HelpRequest): void;
  /** show the Data viewer with this table */
  openDataView(req: DataViewRequest): void;
  /** show a workspace file (html, pdf, image, text) in the Viewer pane */
  openInViewer(path: string): void;
  /** show the Plots pane with this plot (an id of the plot history) selected */
  openPlot(plotId: string): void;
  /** a short message to the user (a toast / status line) */
  notify(message: string, kind?: "info" | "error"): void;
}

/** One session profile the caller may start sessions with (``GET /api/profiles``; the hub's
 * spawners/base.py profiles_for). The local spawner offers exactly one, ``local``; the
 * Kubernetes spawner adds the resources (Kubernetes quantities: "250m", "4Gi"). */
export interface SessionProfile {
  name: string;
  display_name: string;
  description?: string;
  /** used when a start names no profile (and the workspace's last one is not allowed) */
  default: boolean;
  cpu_request?: string;
  cpu_limit?: string | null;
  memory_request?: string;
  memory_limit?: string | null;
  gpu?: number;
}

/** Spark for the caller (``GET /api/spark``; the hub's spark.py describe_for). */
export interface SparkInfo {
  /** "off", "embedded", "external" or a cluster wiring such as "kubernetes" */
  mode: string;
  /** e.g. "running", "down", "off" */
  state: string;
  /** the Spark Connect URL sessions get (no secrets), if any */
  remote: string | null;
  /** the database the caller's sessions start in (embedded server only) */
  database: string | null;
  /** a same-origin path of the Spark web UI the caller may open right now, else null */
  ui_url: string | null;
  /** one sentence for people */
  detail: string;
}
