// Session profiles (GET /api/profiles) and the Spark UI link (GET /api/spark): the logic
// behind the workspace view's profile picker and "Spark UI" link, apart from the DOM.
import type { Api, SessionProfile, SparkInfo } from "../contract";
import type { SessionInfo } from "./model";

/** "250m–2 CPU · 1Gi–4Gi · 1 GPU" (empty for profiles without resources, like ``local``). */
export function profileResources(p: SessionProfile): string {
  const range = (req?: string, lim?: string | null) => (req ? (lim && lim !== req ? `${req}–${lim}` : req) : lim || "");
  const parts: string[] = [];
  const cpu = range(p.cpu_request, p.cpu_limit);
  if (cpu) parts.push(`${cpu} CPU`);
  const mem = range(p.memory_request, p.memory_limit);
  if (mem) parts.push(mem);
  if (p.gpu) parts.push(`${p.gpu} GPU`);
  return parts.join(" · ");
}

/** What an option of the picker says: the display name and the resources. */
export function profileLabel(p: SessionProfile): string {
  const res = profileResources(p);
  const name = p.display_name || p.name;
  return res ? `${name} (${res})` : name;
}

/** The profile a start without a name uses (the first marked default, else the first). */
export function defaultProfile(profiles: SessionProfile[] | null): SessionProfile | undefined {
  return profiles?.find((p) => p.default) ?? profiles?.[0];
}

/** May a session be running (so that another profile needs a stop first)? Everything
 * but a session known to have ended. */
export function mayBeRunning(state: string): boolean {
  return state !== "stopped" && state !== "dead";
}

/** Start the workspace's session with ``profile``, stopping the running one first when
 * ``stopFirst`` (the hub refuses another profile while one runs: 409 session_running).
 * ApiErrors (422 unknown_profile, 409, 503 session_start_failed …) are thrown as they come. */
export async function startWithProfile(api: Api, workspaceId: string, profile: string, stopFirst: boolean): Promise<SessionInfo> {
  const path = `/api/workspaces/${workspaceId}/session`;
  if (stopFirst) await api.del(path);
  return await api.post<SessionInfo>(path, { profile });
}

/** The Spark UI link's target: the hub's ``ui_url`` if it is a path of this origin
 * ("/spark-ui/…"), else null (no link: Spark off, nothing the caller may open, or an
 * answer that is not such a path). */
export function sparkUiHref(info: SparkInfo | null | undefined): string | null {
  const url = info?.ui_url;
  if (!info || info.mode === "off" || typeof url !== "string") return null;
  return url.startsWith("/") && !url.startsWith("//") && !url.startsWith("/\\") ? url : null;
}
