// The variable summaries of the environment endpoint and `env` events (docs/protocol.md).

export interface VarSummary {
  name: string;
  key: string | number;
  type: string;
  kind: string;
  size: number | null;
  size_estimated?: boolean;
  length: number | null;
  dims: number[] | null;
  preview: string;
  preview_truncated?: boolean;
  tabular: boolean;
  has_children: boolean;
  fingerprint?: string;
}

/** GET /api/workspaces/{id}/environment */
export interface EnvListingAnswer {
  language?: string;
  version: number;
  variables: VarSummary[];
  kernel?: string;
}

/** POST …/environment/children */
export interface ChildrenAnswer {
  total: number;
  offset: number;
  children: VarSummary[];
}

/** The `env` event. */
export interface EnvEvent {
  type: "env";
  language: string;
  version: number;
  assigned?: VarSummary[];
  removed?: string[];
  reset?: boolean;
}
