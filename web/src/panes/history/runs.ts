// Run records as the hub serves them (GET /api/workspaces/{id}/runs; docs/architecture.md
// "Run records") and the few words the History pane shows for them.

export interface RunOutput {
  kind: "plot" | "file" | "deleted" | "document";
  path: string | null;
  version: number | null;
  plot_id: string | null;
  mime: string | null;
  sha256: string | null;
  size: number | null;
  url: string | null;
  detail?: Record<string, unknown>;
}

export interface RunEnvironment {
  id: string | null;
  spawner: string;
  profile: string | null;
  image: string | null;
  os?: string | null;
  languages?: Record<string, { version: string | null; packages: number }>;
}

export interface RunRecord {
  id: string;
  session_id: string;
  request_id: string;
  user: string;
  kind: "run" | "source" | "render";
  language: string | null;
  path: string;
  command: string;
  /** where it was asked for: ide (a browser), cli (`rsparkhub run`/`render`), api */
  via: "ide" | "cli" | "api" | "rerun" | null;
  file_version: number | null;
  file_sha256: string | null;
  input_count: number;
  environment: RunEnvironment;
  status: "running" | "ok" | "error" | "aborted" | "failed";
  error_code: string | null;
  message: string | null;
  started_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  transcript: { sha256: string | null; bytes: number; complete: boolean };
  outputs: RunOutput[];
  /** a re-run's record: the record it re-ran, and the comparison with it */
  rerun_of?: string | null;
  rerun?: RerunReport | null;
}

/** One difference reprodiff found (src/rsparkhub/reprodiff.py); non-blocking: reported only. */
export interface RerunDifference {
  kind: "input" | "status" | "transcript" | "plot" | "file" | "environment";
  subject: string;
  cause: string;
  details: string[];
  blocking: boolean;
}

/** A finished re-run's report (GET …/rerun when done, and a re-run record's ``rerun``). */
export interface RerunReport {
  reproduced: boolean;
  verdict: string;
  compared: Record<string, number>;
  differences: RerunDifference[];
  notes?: string[];
  run_id?: string;
  rerun_id?: string;
  workspace_id?: string;
  workspace?: string;
}

/** A re-run's progress: POST …/runs/{id}/rerun (202) and GET /api/workspaces/{new}/rerun. */
export type RerunStatus =
  | { state: "running"; run_id: string; workspace_id: string; workspace: string; status_url: string }
  | ({ state: "done" } & RerunReport)
  | { state: "failed"; run_id: string; workspace_id: string; workspace: string; error: { code: string; message: string } };

export const VIA_NAMES: Record<string, string> = { ide: "IDE", cli: "rsparkhub command", api: "API", rerun: "re-run" };

/** One workspace file when the run started (``GET …/runs/{id}``'s ``inputs``). */
export interface RunInput {
  path: string;
  version: number;
  sha256: string;
  size: number;
}

const LANGUAGE_NAMES: Record<string, string> = { r: "R", python: "Python", bash: "bash" };

/** "1.2 s", "340 ms", "2 min 5 s"; running: "…". */
export function formatDuration(ms: number | null): string {
  if (ms === null || ms === undefined) return "…";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

/** "2026-12-06 15:04:05" in the browser's time zone (stable, sortable). */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "R 4.2.2 (100 packages) · Python 3.11.7 (156 packages) · Debian GNU/Linux 12". */
export function describeEnvironment(env: RunEnvironment): string {
  const parts = Object.entries(env.languages ?? {}).map(([lang, info]) => {
    const name = LANGUAGE_NAMES[lang] ?? lang;
    const pk = info.packages ? ` (${info.packages} packages)` : "";
    return `${name} ${info.version ?? "?"}${pk}`;
  });
  if (env.os) parts.push(env.os);
  if (env.profile) parts.push(`profile ${env.profile}`);
  if (env.image) parts.push(`image ${env.image}`);
  return parts.join(" · ") || "not recorded";
}

/** "1 plot, 2 files" */
export function summarizeOutputs(outputs: RunOutput[]): string {
  const words: Record<RunOutput["kind"], [string, string]> = {
    plot: ["plot", "plots"],
    file: ["file", "files"],
    deleted: ["file deleted", "files deleted"],
    document: ["document", "documents"],
  };
  const counts = new Map<RunOutput["kind"], number>();
  for (const o of outputs) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n} ${words[k][n === 1 ? 0 : 1]}`).join(", ") || "no outputs";
}
