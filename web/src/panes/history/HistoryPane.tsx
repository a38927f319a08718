// The History pane: the workspace's run records (every Run, Source and Render, from this
// window, other windows or `rsparkhub run`), newest first, each with what it ran (file and
// version, environment) and what it produced (plots, files written with their versions,
// rendered documents, the console transcript). The file picker narrows the list to the
// records that ran or wrote one file. The list reloads when a run starts or ends.
import { useEffect, useRef, useState } from "preact/hooks";
import type { AnyEvent, PaneContext } from "../../contract";
import { errorInfo, wsPath } from "../common/api";
import { useEvents } from "../common/useEvents";
import "./history.css";
import { RerunControls } from "./Rerun";
import {
  describeEnvironment,
  formatDuration,
  formatTime,
  summarizeOutputs,
  VIA_NAMES,
  type RunInput,
  type RunOutput,
  type RunRecord,
} from "./runs";

const RELOAD_DELAY_MS = 400;
const LIMIT = 100;

export function HistoryPane({ ctx }: { ctx: PaneContext }) {
  const [runs, setRuns] = useState<RunRecord[] | null>(null);
  const [files, setFiles] = useState<string[]>([]);
  const [error, setError] = useState("");
  const [open, setOpen] = useState<string | null>(null);
  const [path, setPath] = useState<string>("");
  const [reloads, setReloads] = useState(0);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  /** request ids of records (seen starting, or listed): a console line's `done` is not one */
  const recorded = useRef(new Set<string>());

  useEffect(() => {
    let live = true;
    const query = path ? { path, limit: LIMIT } : { limit: LIMIT };
    ctx.api.get<RunRecord[]>(wsPath(ctx, "runs"), query).then(
      (r) => {
        if (!live) return;
        setRuns(r);
        for (const run of r) recorded.current.add(run.request_id);
        setError("");
        if (!path) setFiles(filesOf(r));
      },
      (e) => live && setError(errorInfo(e).message),
    );
    return () => {
      live = false;
    };
  }, [ctx.workspaceId, path, reloads]);

  useEffect(() => () => (timer.current ? clearTimeout(timer.current) : undefined), []);

  // A record starts with its `input`, ends with `done`; its environment may come after.
  useEvents(ctx.events, (ev: AnyEvent) => {
    if (ev.type === "input" && ev.mode !== "console") recorded.current.add(ev.request_id);
    else if (ev.type === "done" && recorded.current.has(ev.request_id)) recorded.current.delete(ev.request_id);
    else if (ev.type !== "environment") return;
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => setReloads((n) => n + 1), RELOAD_DELAY_MS);
  });

  return (
    <section class="rp-pane rp-history" data-testid="history-pane" aria-label="History">
      <div class="rp-toolbar">
        <label class="rp-field" title="Only the runs that ran or wrote this file">
          <select
            data-testid="history-file"
            aria-label="Runs of one file"
            value={path}
            onChange={(e) => setPath((e.target as HTMLSelectElement).value)}
          >
            <option value="">All runs</option>
            {files.map((f) => (
              <option key={f} value={f}>
                {f}
              </option>
            ))}
          </select>
        </label>
        <span class="rp-spacer" />
        <button type="button" class="rp-btn" data-testid="history-reload" onClick={() => setReloads((n) => n + 1)}>
          Reload
        </button>
      </div>
      {error && (
        <div class="rp-error" role="alert" data-testid="history-error">
          {error}
        </div>
      )}
      <div class="rp-scroll">
        {runs && runs.length === 0 && (
          <div class="rp-empty">No runs yet. Every Run, Source and Render (and `rsparkhub run`) is recorded here.</div>
        )}
        <ul class="rp-history-list">
          {(runs ?? []).map((r) => (
            <RunRow key={r.id} ctx={ctx} run={r} open={open === r.id} toggle={() => setOpen(open === r.id ? null : r.id)} />
          ))}
        </ul>
      </div>
    </section>
  );
}

/** The files the records ran or wrote, for the picker. */
function filesOf(runs: RunRecord[]): string[] {
  const all = new Set<string>();
  for (const r of runs) {
    all.add(r.path);
    for (const o of r.outputs) if (o.path && o.kind !== "plot") all.add(o.path);
  }
  return [...all].sort();
}

function RunRow({ ctx, run, open, toggle }: { ctx: PaneContext; run: RunRecord; open: boolean; toggle(): void }) {
  return (
    <li class="rp-history-run" data-testid="history-run" data-id={run.id} data-status={run.status}>
      <button type="button" class="rp-history-head" aria-expanded={open} data-testid="history-run-toggle" onClick={toggle}>
        <span class={`rp-badge rp-history-${run.status}`} data-testid="history-status">
          {run.status}
        </span>
        <span class="rp-mono rp-ellipsis" data-testid="history-command">
          {run.command}
          {run.file_version ? ` v${run.file_version}` : ""}
        </span>
        <span class="rp-spacer" />
        <span class="rp-muted rp-small">{summarizeOutputs(run.outputs)}</span>
        <span class="rp-muted rp-small rp-num">{formatDuration(run.duration_ms)}</span>
      </button>
      <div class="rp-muted rp-small rp-history-meta">
        {run.user} · {formatTime(run.started_at)}
        {run.via ? ` · ${VIA_NAMES[run.via] ?? run.via}` : ""}
      </div>
      {open && <RunDetails ctx={ctx} run={run} />}
    </li>
  );
}

function RunDetails({ ctx, run }: { ctx: PaneContext; run: RunRecord }) {
  const transcript = ctx.api.url(`${wsPath(ctx, "runs", run.id)}/transcript`);
  const environment = ctx.api.url(`${wsPath(ctx, "runs", run.id)}/environment`);
  const [inputs, setInputs] = useState<RunInput[] | null>(null);
  useEffect(() => {
    let live = true;
    ctx.api.get<{ inputs: RunInput[] }>(wsPath(ctx, "runs", run.id)).then(
      (r) => live && setInputs(Array.isArray(r.inputs) ? r.inputs : []),
      () => live && setInputs([]),
    );
    return () => {
      live = false;
    };
  }, [run.id]);
  return (
    <div class="rp-history-details" data-testid="history-details">
      {run.error_code && (
        <div class="rp-error">
          {run.error_code}: {run.message}
        </div>
      )}
      <dl>
        <dt>Ran</dt>
        <dd class="rp-mono">
          {run.path} v{run.file_version ?? "?"} ({run.language}) with {run.input_count} workspace files
        </dd>
        <dt>Environment</dt>
        <dd>
          <span data-testid="history-environment">{describeEnvironment(run.environment)}</span>
          {run.environment.id && (
            <>
              {" "}
              <a class="rp-link" href={environment} target="_blank" rel="noopener" data-testid="history-packages">
                every package
              </a>
            </>
          )}
        </dd>
        <dt>Transcript</dt>
        <dd>
          {run.transcript.sha256 ? (
            <a class="rp-link" href={transcript} target="_blank" rel="noopener" data-testid="history-transcript">
              {run.transcript.bytes} bytes, sha256 {run.transcript.sha256.slice(0, 12)}
            </a>
          ) : (
            <span class="rp-muted">{run.status === "running" ? "still running" : "not kept"}</span>
          )}
        </dd>
      </dl>
      {inputs && inputs.length > 0 && (
        <details class="rp-history-inputs" data-testid="history-inputs">
          <summary>Workspace files when it started ({inputs.length})</summary>
          <ul>
            {inputs.map((f) => (
              <li key={f.path} class="rp-mono" data-testid="history-input">
                {f.path} v{f.version} <span class="rp-muted">{f.sha256.slice(0, 12)}</span>
              </li>
            ))}
          </ul>
        </details>
      )}
      <ul class="rp-history-outputs">
        {run.outputs.map((o, i) => (
          <OutputItem key={i} ctx={ctx} output={o} />
        ))}
      </ul>
      <RerunControls ctx={ctx} run={run} />
    </div>
  );
}

function OutputItem({ ctx, output: o }: { ctx: PaneContext; output: RunOutput }) {
  const href = o.url ? ctx.api.url(o.url) : undefined;
  if (o.kind === "plot" && o.plot_id) {
    return (
      <li data-testid="history-output" data-kind="plot">
        <button type="button" class="rp-history-plot" title="Show in the Plots pane" onClick={() => ctx.openPlot(o.plot_id!)}>
          <img src={href} alt="plot" loading="lazy" data-testid="history-plot" />
        </button>
      </li>
    );
  }
  const label = `${o.path}${o.version ? ` v${o.version}` : ""}`;
  return (
    <li data-testid="history-output" data-kind={o.kind}>
      <span class="rp-badge">{o.kind}</span>{" "}
      {o.kind === "deleted" || !href ? (
        <span class="rp-mono">{label}</span>
      ) : (
        <a class="rp-link rp-mono" href={href} target="_blank" rel="noopener" data-testid="history-output-link">
          {label}
        </a>
      )}
      {o.kind === "document" && o.path && (
        <>
          {" "}
          <button type="button" class="rp-btn" data-testid="history-open-document" onClick={() => ctx.openInViewer(o.path!)}>
            Open
          </button>
        </>
      )}
    </li>
  );
}
