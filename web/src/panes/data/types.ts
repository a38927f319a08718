// The data-view JSON (docs/introspection-contract.md "Data viewer details").

export interface ViewColumn {
  name: string;
  type: string;
  index: number;
  /** Python agents add a type family: number, bool, string, category, datetime, timedelta, other */
  family?: string;
}

/** POST /api/workspaces/{id}/views */
export interface ViewInfo {
  view_id: string;
  language?: string;
  source?: string;
  nrow: number;
  ncol: number;
  columns: ViewColumn[];
}

export interface SortKey {
  column: string;
  descending: boolean;
}

export type FilterOp =
  | "eq"
  | "ne"
  | "lt"
  | "le"
  | "gt"
  | "ge"
  | "between"
  | "is_missing"
  | "not_missing"
  | "in"
  | "contains"
  | "regex";

export type Scalar = string | number | boolean | null;

export interface Filter {
  column: string;
  op: FilterOp;
  value?: Scalar;
  values?: Scalar[];
  min?: string | number;
  max?: string | number;
  pattern?: string;
}

export interface RowsQuery {
  sort: SortKey[];
  filters: Filter[];
  search: string | null;
}

/** POST …/views/{vid}/rows */
export interface RowsAnswer {
  total: number;
  offset: number;
  columns: string[];
  rows: Scalar[][];
  row_labels?: (string | number | null)[] | null;
  recomputed?: boolean;
}
