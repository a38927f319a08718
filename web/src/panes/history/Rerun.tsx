// Re-run and Export of one run record, in the History pane's details: Re-run (editors and
// the owner: it runs code) asks the hub to run the record again in a fresh session with its
// recorded file versions (POST …/runs/{id}/rerun answers 202 at once, docs/reproducibility.md),
// polls the re-run's status (GET /api/workspaces/{new workspace}/rerun) and shows the
// verdict and each difference with its cause; Export downloads the bundle that re-runs it
// without the hub (GET …/export?run=).
import { useEffect, useRef, useState } from "preact/hooks";
import type { PaneContext } from "../../contract";
import { errorInfo, wsPath } from "../common/api";
import type { RerunReport, RerunStatus, RunRecord } from "./runs";

const POLL_MS = 1000;

export function RerunControls({ ctx, run }: { ctx: PaneContext; run: RunRecord }) {
  const [busy, setBusy] = useState(false);
  const [report, setReport] = useState<RerunReport | null>(run.rerun ?? null);
  const [error, setError] = useState("");
  const alive = useRef(true);
  useEffect(
    () => () => {
      alive.current = false; // the pane went away: stop polling
    },
    [],
  );
  const exportUrl = ctx.api.url(wsPath(ctx, "export"), { run: run.id });

  async function rerun() {
    setBusy(true);
    setError("");
    try {
      let state = await ctx.api.post<RerunStatus>(`${wsPath(ctx, "runs", run.id)}/rerun`, { ignore: [] });
      while (state.state === "running" && alive.current) {
        await new Promise((r) => setTimeout(r, POLL_MS));
        state = await ctx.api.get<RerunStatus>(state.status_url);
      }
      if (state.state === "done") setReport(state);
      else if (state.state === "failed") setError(state.error.message);
    } catch (e) {
      setError(errorInfo(e).message);
    } finally {
      if (alive.current) setBusy(false);
    }
  }

  return (
    <div class="rp-history-rerun" data-testid="history-rerun-box">
      <div class="rp-history-actions">
        {ctx.canWrite && run.status !== "running" && (
          <button
            type="button"
            class="rp-btn"
            data-testid="history-rerun"
            disabled={busy}
            title="Run it again in a fresh session with the recorded file versions, and compare"
            onClick={rerun}
          >
            {busy ? "Re-running…" : "Re-run"}
          </button>
        )}
        {run.status !== "running" && (
          <a class="rp-btn" href={exportUrl} download data-testid="history-export" title="A zip that re-runs it without the hub">
            Export
          </a>
        )}
      </div>
      {error && (
        <div class="rp-error" role="alert" data-testid="history-rerun-error">
          {error}
        </div>
      )}
      {report && <RerunVerdict report={report} />}
    </div>
  );
}

export function RerunVerdict({ report }: { report: RerunReport }) {
  const blocking = report.differences.filter((d) => d.blocking);
  const notes = report.differences.filter((d) => !d.blocking);
  return (
    <div class="rp-history-verdict" data-testid="history-verdict" data-reproduced={String(report.reproduced)}>
      <span class={`rp-badge ${report.reproduced ? "rp-history-ok" : "rp-history-error"}`} data-testid="history-verdict-badge">
        {report.verdict}
      </span>{" "}
      <span class="rp-muted rp-small">
        compared{" "}
        {Object.entries(report.compared)
          .map(([k, n]) => `${n} ${k}`)
          .join(", ")}
        {report.workspace ? ` · re-run in "${report.workspace}"` : ""}
      </span>
      {blocking.length > 0 && (
        <ul class="rp-history-diffs">
          {blocking.map((d, i) => (
            <li key={i} data-testid="history-difference">
              {d.cause}
              {d.details.length > 0 && <pre class="rp-mono rp-small">{d.details.join("\n")}</pre>}
            </li>
          ))}
        </ul>
      )}
      {notes.length > 0 && (
        <details class="rp-history-env-diffs">
          <summary>Environment differences ({notes.length})</summary>
          <ul>
            {notes.map((d, i) => (
              <li key={i} class="rp-small">
                {d.cause}
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}
