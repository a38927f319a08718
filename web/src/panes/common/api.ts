// Small helpers around the shell's Api: workspace-scoped paths and error decoding.
import { ApiError, type PaneContext } from "../../contract";

/** "/api/workspaces/{id}/a/b" — every part is URL-encoded (use filePath for a file path). */
export function wsPath(ctx: Pick<PaneContext, "workspaceId">, ...parts: string[]): string {
  const tail = parts.map((p) => encodeURIComponent(p)).join("/");
  return `/api/workspaces/${encodeURIComponent(ctx.workspaceId)}${tail ? `/${tail}` : ""}`;
}

/** A workspace file path ("dir/a b.html") encoded segment by segment. */
export function encodeFilePath(path: string): string {
  return path
    .split("/")
    .filter((s) => s !== "")
    .map((s) => encodeURIComponent(s))
    .join("/");
}

export interface ErrorInfo {
  status: number;
  code: string;
  message: string;
}

/** The hub's {status, code, message} of a failed call (network failures: status 0). */
export function errorInfo(e: unknown): ErrorInfo {
  if (e instanceof ApiError) return { status: e.status, code: e.code, message: e.message };
  if (e && typeof e === "object" && "status" in e && "code" in e) {
    const o = e as { status: unknown; code: unknown; message?: unknown };
    return {
      status: Number(o.status) || 0,
      code: String(o.code),
      message: String(o.message ?? o.code),
    };
  }
  return { status: 0, code: "network", message: e instanceof Error ? e.message : String(e) };
}

export function isCode(e: unknown, ...codes: string[]): boolean {
  return codes.includes(errorInfo(e).code);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Run a session call; a `kernel_busy` answer caused by another pane's call (the agent
 * answers one call per language at a time) is retried after short pauses. A kernel that is
 * busy running user code stays busy: the last kernel_busy error is thrown then. */
export async function withBusyRetry<T>(fn: () => Promise<T>, delays: number[] = [150, 500]): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= delays.length || !isCode(e, "kernel_busy")) throw e;
      await sleep(delays[i]!);
    }
  }
}
