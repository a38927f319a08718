// The Plots pane: the workspace's plot history, the current plot re-rendered to the pane's
// size when the session can draw it again, downloads, delete.
import { useEffect, useRef, useState } from "preact/hooks";
import type { PaneContext, AnyEvent } from "../../contract";
import { errorInfo, wsPath } from "../common/api";
import { useElementSize } from "../common/useElementSize";
import { useDoneWaiter } from "../common/doneWaiter";
import { useEvents } from "../common/useEvents";
import { PublishButton } from "../publish/PublishDialog";
import {
  addPlot,
  current,
  EMPTY_PLOTS,
  extOfMime,
  fromList,
  go,
  type PlotEventLike,
  type PlotListEntry,
  type PlotsState,
  removePlot,
  renderSize,
  select as selectPlot,
  setRenderable,
  tryRender,
} from "./plotState";

const CACHE_SIZE = 12;

/** Rendered images as object URLs, the last few (revoked when dropped). */
class RenderCache {
  private map = new Map<string, string>();
  get(key: string): string | undefined {
    return this.map.get(key);
  }
  set(key: string, url: string): void {
    this.map.set(key, url);
    while (this.map.size > CACHE_SIZE) {
      const [k, u] = this.map.entries().next().value as [string, string];
      this.map.delete(k);
      URL.revokeObjectURL(u);
    }
  }
  clear(): void {
    for (const u of this.map.values()) URL.revokeObjectURL(u);
    this.map.clear();
  }
}

/** A plot to show (an inline plot clicked in the console); ``n`` tells repeated clicks on
 * the same plot apart. */
export interface PlotPick {
  id: string;
  n: number;
}

export function PlotsPane({ ctx, select }: { ctx: PaneContext; select?: PlotPick | null }) {
  const [state, setStateRaw] = useState<PlotsState>(EMPTY_PLOTS);
  const stateRef = useRef(state);
  const setState = (f: (s: PlotsState) => PlotsState) => {
    stateRef.current = f(stateRef.current);
    setStateRaw(stateRef.current);
  };
  const [error, setError] = useState<string | null>(null);
  const loaded = useRef(false);
  const pending = useRef<PlotEventLike[]>([]);
  const wanted = useRef<string | null>(null); // a picked plot the history does not hold yet
  const plotRequest = useRef(new Map<string, string>()); // plot id → the request that drew it
  const areaRef = useRef<HTMLDivElement>(null);
  const size = useElementSize(areaRef, 200);
  const dpr = typeof window !== "undefined" ? window.devicePixelRatio || 1 : 1;
  const rs = renderSize(size.width, size.height, dpr);
  const cache = useRef(new RenderCache());
  const [rendered, setRendered] = useState<{ key: string; id: string; url: string } | null>(null);
  const waiter = useDoneWaiter(ctx.events);
  const [retry, setRetry] = useState(0);
  // requests still running that made plots: their kernel cannot draw again until done
  const [running, setRunning] = useState<ReadonlySet<string>>(new Set());

  const cur = current(state);
  const curRunning = cur ? running.has(plotRequest.current.get(cur.id) ?? "") : false;

  useEffect(() => {
    let live = true;
    ctx.api.get<PlotListEntry[]>(wsPath(ctx, "plots")).then(
      (list) => {
        if (!live) return;
        loaded.current = true;
        let s = fromList(Array.isArray(list) ? list : [], stateRef.current);
        for (const ev of pending.current) s = addPlot(s, ev);
        pending.current = [];
        if (wanted.current !== null) s = selectPlot(s, wanted.current);
        wanted.current = null;
        setState(() => s);
      },
      (e: unknown) => {
        if (!live) return;
        loaded.current = true;
        setError(errorInfo(e).message);
      },
    );
    const c = cache.current;
    return () => {
      live = false;
      c.clear();
    };
  }, [ctx.api, ctx.workspaceId]);

  useEvents(ctx.events, (ev: AnyEvent) => {
    if (ev.type === "plot" && typeof ev.plot_id === "string") {
      const p = ev as unknown as PlotEventLike;
      if (typeof ev.request_id === "string") {
        const rid = ev.request_id;
        plotRequest.current.set(p.plot_id, rid);
        setRunning((r) => (r.has(rid) ? r : new Set(r).add(rid)));
      }
      if (!loaded.current) pending.current.push(p);
      else setState((s) => addPlot(s, p));
    } else if (ev.type === "done" && typeof ev.request_id === "string") {
      const rid = ev.request_id;
      setRunning((r) => {
        if (!r.has(rid)) return r;
        const n = new Set(r);
        n.delete(rid);
        return n;
      });
    } else if (ev.type === "session") {
      setRunning(new Set());
    }
  });

  useEffect(() => {
    if (!select) return;
    if (loaded.current && stateRef.current.plots.some((p) => p.id === select.id)) setState((s) => selectPlot(s, select.id));
    else wanted.current = select.id;
  }, [select?.id, select?.n]);

  const renderKey = cur && rs ? `${cur.id}|${rs.width}|${rs.height}|${rs.res}` : null;
  useEffect(() => {
    if (!cur || !rs || !renderKey || !tryRender(cur) || curRunning) return;
    const hit = cache.current.get(renderKey);
    if (hit) {
      setRendered({ key: renderKey, id: cur.id, url: hit });
      return;
    }
    let live = true;
    const id = cur.id;
    const mark = waiter.mark();
    ctx.api.blob(wsPath(ctx, "plots", id, "render"), { format: "png", width: rs.width, height: rs.height, res: rs.res }).then(
      (blob) => {
        const url = URL.createObjectURL(blob);
        cache.current.set(renderKey, url);
        setState((s) => setRenderable(s, id, true));
        if (live) setRendered({ key: renderKey, id, url });
      },
      (e: unknown) => {
        const err = errorInfo(e);
        if (err.code === "plot_not_renderable") setState((s) => setRenderable(s, id, false));
        else if (err.code === "kernel_busy" || err.code === "session_unavailable")
          waiter.after(mark, () => live && setRetry((n) => n + 1));
        // anything else (no session, …): the stored image stays
      },
    );
    return () => {
      live = false;
    };
  }, [renderKey, cur?.renderable, retry, curRunning]);

  const del = () => {
    if (!cur) return;
    const id = cur.id;
    ctx.api.del(wsPath(ctx, "plots", id)).then(
      () => setState((s) => removePlot(s, id)),
      (e: unknown) => ctx.notify(`Could not delete the plot: ${errorInfo(e).message}`, "error"),
    );
  };

  const stored = (id: string, download = false) => ctx.api.url(wsPath(ctx, "plots", id), download ? { download: true } : undefined);
  const showRendered = cur && rendered && rendered.id === cur.id && cur.renderable !== false;
  const src = cur ? (showRendered ? rendered.url : stored(cur.id)) : "";
  const n = state.plots.length;

  return (
    <section class="rp-pane rp-plots" data-testid="plots-pane" aria-label="Plots">
      <div class="rp-toolbar">
        <button
          type="button"
          class="rp-btn"
          data-testid="plot-prev"
          disabled={state.index <= 0}
          onClick={() => setState((s) => go(s, s.index - 1))}
          aria-label="Previous plot"
        >
          ‹
        </button>
        <span class="rp-muted" aria-live="polite" data-testid="plot-position">
          {n === 0 ? "no plots" : `${state.index + 1} of ${n}`}
        </span>
        <button
          type="button"
          class="rp-btn"
          data-testid="plot-next"
          disabled={state.index >= n - 1}
          onClick={() => setState((s) => go(s, s.index + 1))}
          aria-label="Next plot"
        >
          ›
        </button>
        <span class="rp-spacer" />
        {cur && <Downloads ctx={ctx} id={cur.id} mime={cur.mime} renderable={cur.renderable === true} size={rs} stored={stored(cur.id, true)} />}
        {cur && <PublishButton ctx={ctx} kind="plot" source={cur.id} />}
        {cur && ctx.canWrite && (
          <button type="button" class="rp-btn" data-testid="plot-delete" onClick={del} title="Remove this plot from the history">
            Delete
          </button>
        )}
      </div>
      {error && <div class="rp-status rp-error">{error}</div>}
      <div class="rp-plot-area" ref={areaRef}>
        {cur ? (
          cur.mime.startsWith("image/") ? (
            <img
              data-testid="plot-image"
              data-rendered={showRendered ? "true" : "false"}
              class="rp-plot-img"
              src={src}
              alt={`Plot ${state.index + 1} of ${n}`}
            />
          ) : (
            <a href={stored(cur.id)} target="_blank" rel="noopener">
              open the plot ({cur.mime})
            </a>
          )
        ) : (
          !error && <div class="rp-empty">Plots made by code appear here.</div>
        )}
      </div>
      {n > 1 && (
        <div class="rp-thumbs" role="listbox" aria-label="Plot history">
          {state.plots.map((p, i) => (
            <button
              type="button"
              key={p.id}
              role="option"
              aria-selected={i === state.index}
              class={`rp-thumb${i === state.index ? " rp-current" : ""}`}
              data-testid="plot-thumb"
              onClick={() => setState((s) => go(s, i))}
              title={`Plot ${i + 1}`}
            >
              {p.mime.startsWith("image/") ? <img src={stored(p.id)} alt="" loading="lazy" /> : extOfMime(p.mime)}
            </button>
          ))}
        </div>
      )}
    </section>
  );
}

interface DownloadsProps {
  ctx: PaneContext;
  id: string;
  mime: string;
  renderable: boolean;
  size: { width: number; height: number; res: number } | null;
  stored: string;
}

function Downloads({ ctx, id, mime, renderable, size, stored }: DownloadsProps) {
  if (!renderable) {
    const ext = extOfMime(mime);
    return (
      <span class="rp-group" role="group" aria-label="Download">
        <span class="rp-muted" title="This plot cannot be drawn again (the kernel restarted): only its image is kept">
          Download
        </span>
        <a class="rp-btn" data-testid={`plot-download-${ext}`} href={stored} download title="Download the image">
          {ext.toUpperCase()}
        </a>
      </span>
    );
  }
  // the pane's size in CSS pixels at 96 dpi for vector formats, the screen's pixels for PNG
  const w = size ? Math.round((size.width * 96) / size.res) : 800;
  const h = size ? Math.round((size.height * 96) / size.res) : 600;
  const link = (format: "png" | "svg" | "pdf") =>
    ctx.api.url(wsPath(ctx, "plots", id, "render"), {
      format,
      width: format === "png" && size ? size.width : Math.max(16, w),
      height: format === "png" && size ? size.height : Math.max(16, h),
      res: format === "png" && size ? size.res : 96,
      download: true,
    });
  return (
    <span class="rp-group" role="group" aria-label="Download">
      <span class="rp-muted">Download</span>
      {(["png", "svg", "pdf"] as const).map((f) => (
        <a key={f} class="rp-btn" data-testid={`plot-download-${f}`} href={link(f)} download>
          {f.toUpperCase()}
        </a>
      ))}
    </span>
  );
}
