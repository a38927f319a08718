// Formatting of sizes, dimensions and cell values for the panes.

/** 1536 → "1.5 KB"; null → "?"; an estimate gets a "~". */
export function formatBytes(size: number | null | undefined, estimated = false): string {
  if (size === null || size === undefined || !Number.isFinite(size)) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = size;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = u === 0 ? `${Math.round(v)} B` : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
  return estimated ? `~${text}` : text;
}

/** [100, 3] → "100 × 3"; no dims → the length (or ""). */
export function formatShape(dims: readonly number[] | null | undefined, length: number | null | undefined): string {
  if (dims && dims.length > 0) return dims.map((d) => formatCount(d)).join(" × ");
  if (length !== null && length !== undefined) return formatCount(length);
  return "";
}

/** 1234567 → "1,234,567" (locale-independent, stable in tests). */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const s = String(Math.trunc(Math.abs(n)));
  const grouped = s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (n < 0 ? "-" : "") + grouped;
}

/** A data-view cell as text; null is handled by the caller (dimmed NA). */
export function formatCell(value: unknown, language: string): string {
  if (typeof value === "boolean") {
    if (language === "r") return value ? "TRUE" : "FALSE";
    return value ? "True" : "False";
  }
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}
