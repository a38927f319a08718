// A folder tree of files (role=tree) with one focusable row at a time; the Files pane
// handles the keys.
import { TID } from "../app/testids";
import { baseName, extension, folderOf, formatSize, type FileInfo, type FolderNode } from "../core/files";

export type Row =
  | { kind: "folder"; key: string; path: string; name: string; depth: number; open: boolean }
  | { kind: "file"; key: string; file: FileInfo; depth: number };

/** The visible rows of a tree: folders first, closed folders without their content. */
export function rowsOf(node: FolderNode, closed: Set<string>, section: string, depth = 0, out: Row[] = []): Row[] {
  for (const f of node.folders) {
    const open = !closed.has(f.path);
    out.push({ kind: "folder", key: `${section}:d:${f.path}`, path: f.path, name: f.name, depth, open });
    if (open) rowsOf(f, closed, section, depth + 1, out);
  }
  for (const file of node.files) out.push({ kind: "file", key: `${section}:f:${file.path}`, file, depth });
  return out;
}

export function Tree(props: {
  label: string;
  rows: Row[];
  selected: string | null;
  dropFolder: string | null;
  onActivate(row: Row): void;
  onKey(e: KeyboardEvent, row: Row, rows: Row[]): void;
  onDragFolder(folder: string): void;
}) {
  const { rows, selected } = props;
  const focusKey = rows.find((r) => r.kind === "file" && r.file.path === selected)?.key ?? rows[0]?.key;
  return (
    <ul role="tree" aria-label={props.label} class="file-tree">
      {rows.map((r) => {
        const isSel = r.kind === "file" && r.file.path === selected;
        const folder = r.kind === "folder" ? r.path : folderOf(r.file.path);
        return (
          <li
            key={r.key}
            role="treeitem"
            data-key={r.key}
            aria-level={r.depth + 1}
            aria-expanded={r.kind === "folder" ? r.open : undefined}
            aria-selected={r.kind === "file" ? isSel : undefined}
            tabIndex={r.key === focusKey ? 0 : -1}
            class={`file-row ${r.kind}${isSel ? " selected" : ""}${r.kind === "folder" && props.dropFolder === r.path ? " drop" : ""}`}
            style={{ paddingLeft: `${8 + r.depth * 14}px` }}
            data-testid={r.kind === "file" ? TID.fileItem : undefined}
            data-path={r.kind === "file" ? r.file.path : undefined}
            data-folder={r.kind === "folder" ? r.path : undefined}
            onClick={() => props.onActivate(r)}
            onKeyDown={(e) => props.onKey(e, r, rows)}
            onDragEnter={() => props.onDragFolder(folder)}
          >
            {r.kind === "folder" ? (
              <>
                <span class="twisty" aria-hidden="true">
                  {r.open ? "▾" : "▸"}
                </span>
                <span class="file-name">{r.name}/</span>
              </>
            ) : (
              <>
                <span class="file-icon" aria-hidden="true">
                  {extension(r.file.path).slice(1, 4) || "·"}
                </span>
                <span class="file-name">{baseName(r.file.path)}</span>
                <span class="file-size muted">{formatSize(r.file.size)}</span>
              </>
            )}
          </li>
        );
      })}
    </ul>
  );
}
