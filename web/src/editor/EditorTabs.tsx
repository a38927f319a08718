// The editor's tabs (role=tablist): one per open file, with an unsaved marker; arrow keys
// move between tabs, Delete closes one.
import { TID } from "../app/testids";
import { baseName } from "../core/files";
import type { OpenDoc } from "./OpenDoc";

interface Props {
  docs: OpenDoc[];
  active: string | null;
  onSelect(path: string): void;
  onClose(doc: OpenDoc): void;
}

export const tabId = (i: number): string => `edtab-${i}`;

export function EditorTabs({ docs, active, onSelect, onClose }: Props) {
  if (!docs.length) return null;
  const onKey = (e: KeyboardEvent, i: number) => {
    const n = docs.length;
    const j = { ArrowRight: (i + 1) % n, ArrowLeft: (i - 1 + n) % n, Home: 0, End: n - 1 }[e.key];
    if (e.key === "Delete") {
      e.preventDefault();
      onClose(docs[i]);
    } else if (j !== undefined) {
      e.preventDefault();
      onSelect(docs[j].path);
      document.getElementById(tabId(j))?.focus();
    }
  };
  return (
    <div class="editor-tabs" role="tablist" aria-label="Open files">
      {docs.map((d, i) => (
        <div key={d.path} class={d.path === active ? "editor-tab active" : "editor-tab"} role="presentation">
          <button
            type="button"
            role="tab"
            id={tabId(i)}
            aria-selected={d.path === active}
            aria-controls="editor-panel"
            tabIndex={d.path === active ? 0 : -1}
            data-testid={TID.editorTab}
            data-path={d.path}
            data-dirty={d.dirty ? "true" : "false"}
            data-sync={d.status.state}
            title={`${d.path}${d.status.state === "offline" ? " — not connected: your edits are sent when the hub is back" : ""}${d.deleted ? " — deleted on the hub" : ""}`}
            onClick={() => onSelect(d.path)}
            onKeyDown={(e) => onKey(e, i)}
          >
            <span class={d.deleted ? "tab-name deleted" : "tab-name"}>{baseName(d.path)}</span>
            {d.dirty && (
              <span class="dirty-dot" aria-label="unsaved changes">
                ●
              </span>
            )}
            {d.status.state === "offline" && (
              <span class="stale" aria-label="not connected">
                ⚠
              </span>
            )}
          </button>
          <button type="button" class="tab-close" tabIndex={-1} aria-label={`Close ${d.path}`} onClick={() => onClose(d)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
