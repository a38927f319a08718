// How the Viewer shows a workspace file, by its extension (the hub's raw route serves the
// same set of types inline: src/rsparkhub/hub/api/files.py _INLINE_TYPES).

export type FileKind = "html" | "image" | "pdf" | "text" | "other";

const KINDS: Record<string, FileKind> = {
  html: "html",
  htm: "html",
  svg: "image",
  png: "image",
  jpg: "image",
  jpeg: "image",
  gif: "image",
  webp: "image",
  pdf: "pdf",
  txt: "text",
  csv: "text",
  md: "text",
  json: "text",
};

export function fileKind(path: string): FileKind {
  const base = path.split("/").pop() ?? "";
  const dot = base.lastIndexOf(".");
  if (dot <= 0 && !base.startsWith(".")) return "other";
  return KINDS[base.slice(dot + 1).toLowerCase()] ?? "other";
}

/** "./out/report.html", "/out/report.html" → "out/report.html" */
export function normalizePath(path: string): string {
  return path
    .split("/")
    .filter((s) => s !== "" && s !== ".")
    .join("/");
}

export function samePath(a: string | null | undefined, b: string | null | undefined): boolean {
  return !!a && !!b && normalizePath(a) === normalizePath(b);
}
