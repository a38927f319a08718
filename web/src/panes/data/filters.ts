// Typed filters of the data viewer: which operators a column offers, parsing what the
// user typed into the hub's filter JSON, and a short description for the filter chips.
import type { Filter, FilterOp, Scalar, ViewColumn } from "./types";

export type ColumnClass = "number" | "text" | "logical" | "date" | "other";

/** A column's class from the Python agent's `family` or the type name (R class / dtype). */
export function columnClass(col: Pick<ViewColumn, "type" | "family">): ColumnClass {
  const fam = (col.family ?? "").toLowerCase();
  if (fam === "number") return "number";
  if (fam === "bool") return "logical";
  if (fam === "string" || fam === "category") return "text";
  if (fam === "datetime") return "date";
  if (fam === "timedelta" || fam === "other") return "other";
  const t = col.type.toLowerCase();
  if (/^(numeric|integer|double|integer64|number|u?int\d*|float\d*|decimal)$/.test(t) || /^(u?int|float)\d+$/i.test(t)) return "number";
  if (/^(logical|bool|boolean)$/.test(t)) return "logical";
  if (/^(character|factor|ordered|string|str|object|category|utf8|categorical|enum)$/.test(t)) return "text";
  if (/^(date|posixct|posixlt|posixt|idate|itime|datetime.*|date32.*|date64.*|timestamp.*)$/.test(t) || t.startsWith("datetime64")) return "date";
  return "other";
}

export type Arity = "none" | "one" | "two" | "list" | "pattern";

export interface OpInfo {
  op: FilterOp;
  label: string;
  arity: Arity;
}

const OPS: Record<FilterOp, OpInfo> = {
  eq: { op: "eq", label: "=", arity: "one" },
  ne: { op: "ne", label: "≠", arity: "one" },
  lt: { op: "lt", label: "<", arity: "one" },
  le: { op: "le", label: "≤", arity: "one" },
  gt: { op: "gt", label: ">", arity: "one" },
  ge: { op: "ge", label: "≥", arity: "one" },
  between: { op: "between", label: "between", arity: "two" },
  contains: { op: "contains", label: "contains", arity: "one" },
  regex: { op: "regex", label: "matches regex", arity: "pattern" },
  in: { op: "in", label: "in list", arity: "list" },
  is_missing: { op: "is_missing", label: "is missing", arity: "none" },
  not_missing: { op: "not_missing", label: "is not missing", arity: "none" },
};

const BY_CLASS: Record<ColumnClass, FilterOp[]> = {
  number: ["eq", "ne", "lt", "le", "gt", "ge", "between", "in", "is_missing", "not_missing"],
  text: ["contains", "regex", "eq", "ne", "in", "is_missing", "not_missing"],
  logical: ["eq", "is_missing", "not_missing"],
  date: ["eq", "ne", "lt", "le", "gt", "ge", "between", "is_missing", "not_missing"],
  other: ["contains", "eq", "ne", "is_missing", "not_missing"],
};

export function opsFor(cls: ColumnClass): OpInfo[] {
  return BY_CLASS[cls].map((op) => OPS[op]);
}

export function opInfo(op: FilterOp): OpInfo {
  return OPS[op];
}

export type BuildResult = { filter: Filter } | { error: string };

function parseNumber(s: string): number | null {
  const t = s.trim();
  if (t === "") return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

function parseLogical(s: string): boolean | null {
  const t = s.trim().toLowerCase();
  if (["true", "t", "1", "yes"].includes(t)) return true;
  if (["false", "f", "0", "no"].includes(t)) return false;
  return null;
}

/** "a, b, c" → ["a", "b", "c"] (a value may be quoted to keep its commas: "x, y"). */
export function splitList(s: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*(?:,|$)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    if (m[0] === "") {
      re.lastIndex++;
      if (re.lastIndex > s.length) break;
      continue;
    }
    const v = m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? "").trim();
    if (v !== "" || m[1] !== undefined) out.push(v);
    if (re.lastIndex >= s.length) break;
  }
  return out;
}

/** The filter for what the user typed, or why it is not one. */
export function buildFilter(column: string, cls: ColumnClass, op: FilterOp, input: string, input2 = ""): BuildResult {
  const info = OPS[op];
  if (!info) return { error: `unknown operator ${op}` };
  if (info.arity === "none") return { filter: { column, op } };
  if (info.arity === "pattern") {
    // the kernel's regex dialect (R/Python) is not JavaScript's: the kernel judges it
    if (input === "") return { error: "Enter a regular expression." };
    return { filter: { column, op, pattern: input } };
  }
  const scalar = (s: string): Scalar | { error: string } => {
    if (cls === "number") {
      const n = parseNumber(s);
      return n === null ? { error: `“${s.trim()}” is not a number.` } : n;
    }
    if (cls === "logical") {
      const b = parseLogical(s);
      return b === null ? { error: "Enter TRUE or FALSE." } : b;
    }
    return cls === "date" ? s.trim() : s;
  };
  const isErr = (v: Scalar | { error: string }): v is { error: string } => v !== null && typeof v === "object";
  if (info.arity === "one") {
    if (input.trim() === "" && op !== "eq" && op !== "ne") return { error: "Enter a value." };
    if (op === "contains") return input === "" ? { error: "Enter some text." } : { filter: { column, op, value: input } };
    const v = scalar(input);
    if (isErr(v)) return v;
    return { filter: { column, op, value: v } };
  }
  if (info.arity === "two") {
    const lo = scalar(input);
    const hi = scalar(input2);
    if (isErr(lo)) return lo;
    if (isErr(hi)) return hi;
    if (lo === "" || hi === "" || lo === null || hi === null || typeof lo === "boolean" || typeof hi === "boolean")
      return { error: "Enter both bounds." };
    return { filter: { column, op, min: lo, max: hi } };
  }
  // list
  const items = splitList(input);
  if (items.length === 0) return { error: "Enter values separated by commas." };
  const values: Scalar[] = [];
  for (const it of items) {
    const v = scalar(it);
    if (isErr(v)) return v;
    values.push(v);
  }
  return { filter: { column, op, values } };
}

function show(v: Scalar | undefined): string {
  if (typeof v === "string") return `“${v}”`;
  return String(v);
}

/** "mpg ≥ 20", "name contains “x”", "cyl in (4, 6)", "x is missing" */
export function describeFilter(f: Filter): string {
  const info = OPS[f.op];
  switch (info?.arity) {
    case "none":
      return `${f.column} ${info.label}`;
    case "pattern":
      return `${f.column} ~ /${f.pattern ?? ""}/`;
    case "two":
      return `${f.column} between ${show(f.min)} and ${show(f.max)}`;
    case "list":
      return `${f.column} in (${(f.values ?? []).map(show).join(", ")})`;
    case "one":
      return `${f.column} ${info.label} ${show(f.value)}`;
    default:
      return `${f.column} ${f.op}`;
  }
}
