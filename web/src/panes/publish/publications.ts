// The hub's publications (hub/api/publications.py): a rendered document or a plot at a
// stable URL for an audience. Pure helpers; the dialog is PublishDialog.tsx.

export type Audience = "members" | "hub" | "link";
export type PublicationKind = "document" | "plot";

export interface Publication {
  id: string;
  workspace_id: string;
  kind: PublicationKind;
  source: string;
  title: string;
  audience: Audience;
  /** "/api/pub/<id>", with "?token=…" for a link publication ("" when not ours to hand out) */
  url: string;
  mime: string;
  size: number;
  file_version: number | null;
  origin_path: string | null;
  origin_version: number | null;
  rendered_at: string | null;
  published_at: string | null;
  published_by: string;
  created_at: string | null;
  /** GET /api/publications only: the caller's role in its workspace (null: not a member) */
  role?: "owner" | "editor" | "viewer" | null;
  /** GET /api/publications only: the workspace's name, for members */
  workspace_name?: string | null;
}

/** Whether the caller may republish, re-audience or unpublish it (the hub's rule). */
export const canManage = (p: Publication): boolean => p.role === "owner" || p.role === "editor";

export const AUDIENCES: { value: Audience; label: string }[] = [
  { value: "members", label: "Workspace members" },
  { value: "hub", label: "Every user of this hub" },
  { value: "link", label: "Anyone with the link" },
];

/** The publication of this source in the list, if any. */
export function findPublication(list: Publication[], kind: PublicationKind, source: string): Publication | undefined {
  return list.find((p) => p.kind === kind && p.source === source);
}

/** "/api/pub/x?token=y" → ["/api/pub/x", {token: "y"}]: the parts Api.url takes. */
export function splitUrl(url: string): [string, Record<string, string>] {
  const [path, query = ""] = url.split("?", 2) as [string, string?];
  const params: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query)) params[k] = v;
  return [path, params];
}

/** "report.html version 3 (source report.Rmd version 2)" or "plot" */
export function versionLabel(p: Publication): string {
  if (p.kind === "plot") return "plot";
  let out = `${p.source} version ${p.file_version ?? "?"}`;
  if (p.origin_path) out += ` (source ${p.origin_path} version ${p.origin_version ?? "?"})`;
  return out;
}
