// What a workspace file is, by its name: source (opened in the editor), something the
// Viewer shows, and the language it runs in — read from the one extension table
// (filetypes.py, generated into generated/protocol.ts).
import type { Language } from "../contract";
import { FILE_TYPES, type FileType } from "../generated/protocol";

export interface FileInfo {
  path: string;
  version: number;
  size: number;
  sha256?: string;
  kind?: string;
  updated_at?: string;
}

const BY_EXTENSION = new Map(FILE_TYPES.map((t) => [t.extension, t]));

export function extension(path: string): string {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot).toLowerCase() : "";
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function folderOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

export function fileType(path: string): FileType | null {
  return BY_EXTENSION.get(extension(path)) ?? null;
}

/** Opened in the editor (everything else goes to the Viewer). */
export function isSource(path: string): boolean {
  return fileType(path)?.source ?? false;
}

/** Rendered (knit) rather than run. */
export function isDocument(path: string): boolean {
  return fileType(path)?.document ?? false;
}

/** The language a script runs in (null for documents: they are rendered instead). */
export function scriptLanguage(path: string): Language | null {
  const t = fileType(path);
  return t && !t.document ? t.language : null;
}

export interface FolderNode {
  name: string;
  /** "" for the root */
  path: string;
  folders: FolderNode[];
  files: FileInfo[];
}

/** Files grouped by folder, folders first, both sorted by name. */
export function buildTree(files: FileInfo[]): FolderNode {
  const root: FolderNode = { name: "", path: "", folders: [], files: [] };
  const byPath = new Map<string, FolderNode>([["", root]]);
  const folder = (path: string): FolderNode => {
    const known = byPath.get(path);
    if (known) return known;
    const parent = folder(folderOf(path));
    const node: FolderNode = { name: baseName(path), path, folders: [], files: [] };
    parent.folders.push(node);
    byPath.set(path, node);
    return node;
  };
  for (const f of files) folder(folderOf(f.path)).files.push(f);
  const sort = (n: FolderNode): void => {
    n.folders.sort((a, b) => a.name.localeCompare(b.name));
    n.files.sort((a, b) => a.path.localeCompare(b.path));
    n.folders.forEach(sort);
  };
  sort(root);
  return root;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
