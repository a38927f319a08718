// Shapes of the hub's REST answers the shell reads (JSON boundary).
import type { Language } from "../contract";

export interface Me {
  id: string;
  name: string;
  is_admin: boolean;
  disabled?: boolean;
  has_password?: boolean;
}

export interface Project {
  id: string;
  name: string;
  owner_id: string;
}

export type Role = "owner" | "editor" | "viewer";

/** Why a viewer's buttons (run, save, new file …) are disabled: their tooltip. */
export const VIEWER_WHY = "You are a viewer of this workspace: only its owners and editors can run code or change files.";

/** Who has access to a workspace (GET /api/workspaces/{id}/members). */
export interface Member {
  user: string;
  role: Role;
  /** the owner of the workspace's project: always owner, cannot be changed or removed */
  project_owner: boolean;
}

/** An admin's answer that carries a one-time login link (new user, password reset). */
export interface UserWithLink extends Me {
  login_link?: string;
  warning?: string;
}

export interface Workspace {
  id: string;
  name: string;
  project_id: string;
  role: Role | null;
  project?: string;
}

export interface Example {
  name: string;
  title: string;
  description: string;
}

export interface SessionInfo {
  id: string;
  workspace_id: string;
  state: string;
  started_at: string | null;
  ended_at?: string | null;
  languages: Language[];
  owner?: string;
  workspace?: string;
  project?: string;
  memory_bytes?: number | null;
  /** the profile the session runs (or last ran) with; null while it starts */
  profile?: string | null;
}
