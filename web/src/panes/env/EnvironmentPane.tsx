// The Environment pane: one language's variables, updated by pushed `env` events. It shows
// the console's language unless the user pins one (choosing a language pins it).
import type { JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Language, PaneContext } from "../../contract";
import { errorInfo, withBusyRetry, wsPath } from "../common/api";
import { formatBytes, formatShape } from "../common/format";
import { appendChildren, envLanguage, envNotice, pathKey, pruneExpanded, type ChildPage } from "./envState";
import type { ChildrenAnswer, VarSummary } from "./types";
import { useEnvListing } from "./useEnvListing";

const CHILD_PAGE = 100;
const LANG_LABEL: Record<Language, string> = { r: "R", python: "Python", bash: "bash" };

interface NodeState extends ChildPage {
  loading: boolean;
  error: string | null;
}

export function EnvironmentPane({ ctx }: { ctx: PaneContext }) {
  const languages = ctx.languages.length > 0 ? ctx.languages : (["r"] as Language[]);
  const [pinned, setPinned] = useState<Language | null>(null);
  const language = envLanguage(pinned, ctx.consoleLanguage, languages);
  const [hidden, setHidden] = useState(false);
  const env = useEnvListing(ctx, language, hidden);
  const [expanded, setExpanded] = useState<Set<string>>(new Set());
  const [nodes, setNodes] = useState<Map<string, NodeState>>(new Map());

  // variables that changed lose their expanded children
  useEffect(() => {
    setExpanded((cur) => pruneExpanded(cur, env.changes.names, env.changes.all));
    setNodes((cur) => {
      if (env.changes.all) return new Map();
      const gone = new Set(env.changes.names);
      return new Map([...cur].filter(([k]) => !gone.has(String((JSON.parse(k) as unknown[])[0]))));
    });
  }, [env.changes.n]);

  const loadChildren = (path: (string | number)[], offset: number) => {
    const key = pathKey(path);
    setNodes((m) => {
      const next = new Map(m);
      const prev = m.get(key);
      next.set(key, { total: prev?.total ?? 0, children: prev?.children ?? [], loading: true, error: null });
      return next;
    });
    withBusyRetry(() =>
      ctx.api.post<ChildrenAnswer>(wsPath(ctx, "environment", "children"), {
        language,
        path,
        offset,
        limit: CHILD_PAGE,
      }),
    ).then(
      (page) =>
        setNodes((m) => {
          const next = new Map(m);
          next.set(key, { ...appendChildren(m.get(key), page), loading: false, error: null });
          return next;
        }),
      (e: unknown) =>
        setNodes((m) => {
          const next = new Map(m);
          const prev = m.get(key);
          const err = errorInfo(e);
          next.set(key, {
            total: prev?.total ?? 0,
            children: prev?.children ?? [],
            loading: false,
            error: err.code === "kernel_busy" ? "busy — try again when it finishes" : err.message,
          });
          return next;
        }),
    );
  };

  const toggle = (path: (string | number)[]) => {
    const key = pathKey(path);
    const next = new Set(expanded);
    if (next.has(key)) next.delete(key);
    else {
      next.add(key);
      const node = nodes.get(key);
      if (!node || node.error) loadChildren(path, 0);
    }
    setExpanded(next);
  };

  const remove = (name: string) => {
    ctx.api.del(wsPath(ctx, "environment", name), { language }).then(
      () => env.removeLocally([name]),
      (e: unknown) => ctx.notify(`Could not remove ${name}: ${errorInfo(e).message}`, "error"),
    );
  };

  const clearAll = () => {
    const what = hidden ? "all variables, hidden ones too" : "all variables";
    if (!window.confirm(`Remove ${what} of the ${LANG_LABEL[language]} session?`)) return;
    ctx.api.del(wsPath(ctx, "environment"), { language, hidden: hidden ? true : undefined }).then(
      () => env.removeLocally("all"),
      (e: unknown) => ctx.notify(`Could not clear the environment: ${errorInfo(e).message}`, "error"),
    );
  };

  const openView = (v: VarSummary) => {
    if (v.tabular && (language === "r" || language === "python")) ctx.openDataView({ language, name: v.name });
  };

  const notice = envNotice(env.status, ctx.sessionState, env.message);
  const rows: JSX.Element[] = [];
  const addRows = (vars: VarSummary[], parent: (string | number)[] | null, depth: number) => {
    for (const v of vars) {
      const path = parent ? [...parent, v.key] : [v.name];
      const key = pathKey(path);
      const open = expanded.has(key);
      rows.push(
        <VarRow
          key={key}
          v={v}
          depth={depth}
          top={parent === null}
          open={open}
          canWrite={ctx.canWrite}
          onToggle={() => toggle(path)}
          onDelete={() => remove(v.name)}
          onOpen={() => openView(v)}
          viewable={v.tabular && language !== "bash"}
        />,
      );
      if (open) {
        const node = nodes.get(key);
        if (node) addRows(node.children, path, depth + 1);
        if (node?.loading) rows.push(<InfoRow key={`${key}:l`} depth={depth + 1} text="loading…" />);
        else if (node?.error) rows.push(<InfoRow key={`${key}:e`} depth={depth + 1} text={node.error} error />);
        else if (node && node.children.length < node.total)
          rows.push(
            <tr key={`${key}:m`} class="rp-env-more">
              <td colSpan={6} style={{ paddingLeft: `${(depth + 1) * 14 + 20}px` }}>
                <button type="button" class="rp-link" onClick={() => loadChildren(path, node.children.length)}>
                  more… ({node.total - node.children.length} of {node.total} not shown)
                </button>
              </td>
            </tr>,
          );
        else if (node && node.total === 0) rows.push(<InfoRow key={`${key}:0`} depth={depth + 1} text="(empty)" />);
      }
    }
  };
  addRows(env.listing.variables, null, 0);

  return (
    <section class="rp-pane rp-env" data-testid="env-pane" aria-label="Environment">
      <div class="rp-toolbar">
        <label class="rp-field">
          <span class="rp-sr">Language</span>
          <select
            data-testid="env-language"
            value={language}
            onChange={(e) => setPinned((e.currentTarget as HTMLSelectElement).value as Language)}
          >
            {languages.map((l) => (
              <option key={l} value={l}>
                {LANG_LABEL[l]}
              </option>
            ))}
          </select>
        </label>
        <button
          type="button"
          class={`rp-btn rp-pin${pinned ? " rp-pinned" : ""}`}
          data-testid="env-pin"
          aria-pressed={pinned !== null}
          onClick={() => setPinned(pinned ? null : language)}
          title={
            pinned
              ? `Pinned to ${LANG_LABEL[language]}: click to follow the console's language`
              : `Follows the console's language: click to keep showing ${LANG_LABEL[language]}`
          }
        >
          {pinned ? "Pinned" : "Pin"}
        </button>
        <label class="rp-check">
          <input type="checkbox" checked={hidden} onChange={(e) => setHidden((e.currentTarget as HTMLInputElement).checked)} />
          show hidden
        </label>
        <span class="rp-spacer" />
        <button type="button" class="rp-btn" onClick={() => env.reload()} title="Reload the variables">
          ⟳
        </button>
        {ctx.canWrite && (
          <button
            type="button"
            class="rp-btn"
            data-testid="env-clear"
            onClick={clearAll}
            disabled={env.listing.variables.length === 0}
            title="Remove all variables"
          >
            Clear
          </button>
        )}
      </div>
      {notice && (
        <div class={`rp-status ${notice.error ? "rp-error" : ""}`} role="status" data-testid="env-status">
          {notice.text}
        </div>
      )}
      <div class="rp-scroll">
        <table class="rp-env-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col" class="rp-num">
                Size
              </th>
              <th scope="col" class="rp-num" title="Dimensions or length">
                Dims
              </th>
              <th scope="col">Value</th>
              <th scope="col">
                <span class="rp-sr">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>{rows}</tbody>
        </table>
        {env.status === "loading" && env.listing.variables.length === 0 && <div class="rp-empty">loading…</div>}
        {env.status === "ready" && env.listing.variables.length === 0 && (
          <div class="rp-empty">{env.notStarted ? `The ${LANG_LABEL[language]} kernel has not started yet.` : "No variables."}</div>
        )}
      </div>
    </section>
  );
}

interface VarRowProps {
  v: VarSummary;
  depth: number;
  top: boolean;
  open: boolean;
  canWrite: boolean;
  viewable: boolean;
  onToggle: () => void;
  onDelete: () => void;
  onOpen: () => void;
}

function VarRow({ v, depth, top, open, canWrite, viewable, onToggle, onDelete, onOpen }: VarRowProps) {
  const clickable = top && viewable;
  return (
    <tr
      data-testid={top ? "env-row" : "env-child-row"}
      data-name={v.name}
      class={`rp-env-row${clickable ? " rp-clickable" : ""}`}
      onClick={clickable ? onOpen : undefined}
      title={clickable ? `Open ${v.name} in the data viewer` : undefined}
    >
      <td class="rp-env-name" style={{ paddingLeft: `${depth * 14 + 4}px` }} title={v.name}>
        {v.has_children ? (
          <button
            type="button"
            class="rp-expand"
            data-testid="env-expand"
            aria-expanded={open}
            aria-label={`${open ? "Collapse" : "Expand"} ${v.name}`}
            onClick={(e) => {
              e.stopPropagation();
              onToggle();
            }}
          >
            {open ? "▾" : "▸"}
          </button>
        ) : (
          <span class="rp-expand-gap" />
        )}
        <span class="rp-mono">{v.name}</span>
      </td>
      <td class="rp-muted" title={v.kind}>
        {v.type}
      </td>
      <td class="rp-num">{formatBytes(v.size, v.size_estimated)}</td>
      <td class="rp-num" title={formatShape(v.dims, v.length)}>
        {formatShape(v.dims, v.length)}
      </td>
      <td class="rp-env-preview rp-mono" title={v.preview}>
        {v.preview}
        {v.preview_truncated && !v.preview.endsWith("…") ? "…" : ""}
      </td>
      <td class="rp-env-actions">
        {clickable && (
          <button
            type="button"
            class="rp-icon"
            aria-label={`View ${v.name}`}
            title="Open in the data viewer"
            onClick={(e) => {
              e.stopPropagation();
              onOpen();
            }}
          >
            ▦
          </button>
        )}
        {top && canWrite && (
          <button
            type="button"
            class="rp-icon"
            data-testid="env-delete"
            aria-label={`Remove ${v.name}`}
            title={`Remove ${v.name}`}
            onClick={(e) => {
              e.stopPropagation();
              onDelete();
            }}
          >
            ×
          </button>
        )}
      </td>
    </tr>
  );
}

function InfoRow({ depth, text, error }: { depth: number; text: string; error?: boolean }) {
  return (
    <tr class="rp-env-info">
      <td colSpan={6} class={error ? "rp-error" : "rp-muted"} style={{ paddingLeft: `${depth * 14 + 20}px` }}>
        {text}
      </td>
    </tr>
  );
}
