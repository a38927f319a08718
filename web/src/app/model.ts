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
  languages: Language[];
  owner?: string;
  workspace?: string;
  memory_bytes?: number | null;
  /** the profile the session runs (or last ran) with; null while it starts */
  profile?: string | null;
}
