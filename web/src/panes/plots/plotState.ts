// Pure state of the Plots pane: the history, the current plot, and what is known about
// each plot's renderability (a `plot` event says it; the history list does not, so an
// older plot is tried once and a 409 plot_not_renderable remembered).

/** One entry of GET /api/workspaces/{id}/plots */
export interface PlotListEntry {
  id: string;
  mime: string;
  width?: number | null;
  height?: number | null;
  created_at?: string;
}

export interface PlotItem {
  id: string;
  mime: string;
  width: number | null;
  height: number | null;
  /** true: can be drawn again; false: only the stored image; null: not known yet */
  renderable: boolean | null;
}

export interface PlotsState {
  plots: PlotItem[];
  index: number; // -1 when empty
}

export const EMPTY_PLOTS: PlotsState = { plots: [], index: -1 };

/** The `plot` event's fields. */
export interface PlotEventLike {
  plot_id: string;
  mime?: string;
  width?: number | null;
  height?: number | null;
  renderable?: boolean;
}

/** The history loaded from the list (oldest first); what `prev` knew is kept, plots that
 * came as events meanwhile and are not in the list yet stay at the end. Shows the newest. */
export function fromList(list: readonly PlotListEntry[], prev: PlotsState = EMPTY_PLOTS): PlotsState {
  const known = new Map(prev.plots.map((p) => [p.id, p] as const));
  const plots: PlotItem[] = list.map((e) => ({
    id: e.id,
    mime: e.mime,
    width: e.width ?? null,
    height: e.height ?? null,
    renderable: known.get(e.id)?.renderable ?? null,
  }));
  const ids = new Set(plots.map((p) => p.id));
  for (const p of prev.plots) if (!ids.has(p.id)) plots.push(p);
  return { plots, index: plots.length - 1 };
}

/** A new plot from a `plot` event: appended (once) and shown. */
export function addPlot(state: PlotsState, ev: PlotEventLike): PlotsState {
  const i = state.plots.findIndex((p) => p.id === ev.plot_id);
  if (i >= 0) {
    const plots = [...state.plots];
    plots[i] = { ...plots[i]!, renderable: ev.renderable ?? plots[i]!.renderable };
    return { plots, index: i };
  }
  const item: PlotItem = {
    id: ev.plot_id,
    mime: ev.mime ?? "image/png",
    width: ev.width ?? null,
    height: ev.height ?? null,
    renderable: ev.renderable === true ? true : ev.renderable === false ? false : null,
  };
  return { plots: [...state.plots, item], index: state.plots.length };
}

export function removePlot(state: PlotsState, id: string): PlotsState {
  const i = state.plots.findIndex((p) => p.id === id);
  if (i < 0) return state;
  const plots = state.plots.filter((p) => p.id !== id);
  let index = state.index;
  if (i < index || index >= plots.length) index--;
  return { plots, index: plots.length === 0 ? -1 : Math.max(0, index) };
}

export function setRenderable(state: PlotsState, id: string, renderable: boolean): PlotsState {
  const i = state.plots.findIndex((p) => p.id === id);
  if (i < 0 || state.plots[i]!.renderable === renderable) return state;
  const plots = [...state.plots];
  plots[i] = { ...plots[i]!, renderable };
  return { ...state, plots };
}

/** Show the plot with this id; unchanged when the history does not hold it. */
export function select(state: PlotsState, id: string): PlotsState {
  const i = state.plots.findIndex((p) => p.id === id);
  return i < 0 || i === state.index ? state : { ...state, index: i };
}

export function go(state: PlotsState, index: number): PlotsState {
  if (state.plots.length === 0) return state;
  return { ...state, index: Math.min(state.plots.length - 1, Math.max(0, index)) };
}

export function current(state: PlotsState): PlotItem | null {
  return state.index >= 0 ? (state.plots[state.index] ?? null) : null;
}

/** Should the pane ask for a re-rendered image (known renderable, or not known yet)? */
export function tryRender(p: PlotItem): boolean {
  return p.renderable !== false;
}

export interface RenderSize {
  width: number;
  height: number;
  res: number;
}

/** The render request for a box of cssWidth × cssHeight CSS pixels on a screen with this
 * devicePixelRatio: device pixels, and a resolution that keeps text at its CSS size. */
export function renderSize(cssWidth: number, cssHeight: number, dpr: number): RenderSize | null {
  if (!(cssWidth >= 16 && cssHeight >= 16)) return null;
  const ratio = Number.isFinite(dpr) && dpr > 0 ? Math.min(dpr, 4) : 1;
  const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.round(v)));
  return {
    width: clamp(cssWidth * ratio, 16, 8000),
    height: clamp(cssHeight * ratio, 16, 8000),
    res: clamp(96 * ratio, 36, 600),
  };
}

export function extOfMime(mime: string): string {
  if (mime === "image/png") return "png";
  if (mime === "image/svg+xml") return "svg";
  if (mime === "application/pdf") return "pdf";
  if (mime === "image/jpeg") return "jpeg";
  return "bin";
}
