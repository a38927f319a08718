// The contract between the app shell (core: src/core/, src/app/) and the panes
// (src/panes/). The shell owns the session socket, the REST client, layout and routing;
// a pane gets a PaneContext and renders one area of the workspace view.

export type Language = "r" | "python" | "bash";

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

/** One event of the session stream (docs/protocol.md: the ``event`` of an envelope):
 * stream, result, error, plot, status, done, session, reply, env, view_released, help,
 * document. */
export interface SessionEvent {
  type: string;
  request_id?: string | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [key: string]: any;
}

/** Every event of the workspace's stream, in order and exactly once (also those replayed
 * when the page attaches: a pane that subscribes late gets only new ones, so it loads its
 * current state from the REST API when it mounts). ``seq`` is the stream position. */
export interface EventBus {
  subscribe(fn: (ev: SessionEvent, seq: number) => void): () => void;
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
  /** show the Help pane with this topic or search */
  openHelp(req: HelpRequest): void;
  /** show the Data viewer with this table */
  openDataView(req: DataViewRequest): void;
  /** show a workspace file (html, pdf, image, text) in the Viewer pane */
  openInViewer(path: string): void;
  /** a short message to the user (a toast / status line) */
  notify(message: string, kind?: "info" | "error"): void;
}
