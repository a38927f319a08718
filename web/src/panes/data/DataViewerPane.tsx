// The Data viewer: a data view (POST …/views) of a data frame / matrix shown in a
// virtualised grid over the paged rows API, with multi-column sort, typed filters and a
// global search.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { DataViewRequest, PaneContext, AnyEvent } from "../../contract";
import { errorInfo, type ErrorInfo, withBusyRetry, wsPath } from "../common/api";
import { formatCount } from "../common/format";
import { useDoneWaiter } from "../common/doneWaiter";
import { useEvents } from "../common/useEvents";
import { columnClass } from "./filters";
import { FilterPanel } from "./FilterPanel";
import { Grid } from "./Grid";
import { PageCache, pageSizeFor, queryKey } from "./pageCache";
import { RowLoader } from "./rowLoader";
import { cycleSort } from "./sortCycle";
import type { Filter, RowsAnswer, RowsQuery, SortKey, ViewInfo } from "./types";

const SEARCH_DEBOUNCE_MS = 300;
const RANGE_DEBOUNCE_MS = 60;
let paneSeq = 0;

interface OpenView {
  info: ViewInfo;
  language: "r" | "python";
  request: DataViewRequest;
  cache: PageCache;
  loader: RowLoader;
}

function defaultWidth(name: string, cls: string): number {
  const base = cls === "number" ? 100 : cls === "logical" ? 80 : cls === "date" ? 150 : 160;
  return Math.min(320, Math.max(base, name.length * 8 + 44));
}

function describeError(err: ErrorInfo, req: DataViewRequest | null): string {
  const what = req?.name ?? req?.expr ?? "the table";
  switch (err.code) {
    case "not_tabular":
      return err.message || `${what} is not a table.`;
    case "not_found":
      return `No variable named ${what}.`;
    case "view_not_found":
      return "This view no longer exists (its variable changed or the session restarted).";
    case "session_not_running":
      return "no session";
    case "kernel_busy":
      return "busy — updates when it finishes";
    default:
      return err.message;
  }
}

export function DataViewerPane({ ctx, request }: { ctx: PaneContext; request?: DataViewRequest | null }) {
  const [view, setView] = useState<OpenView | null>(null);
  const viewRef = useRef<OpenView | null>(null);
  const [opening, setOpening] = useState(false);
  const [openError, setOpenError] = useState<ErrorInfo | null>(null);
  const [rowsError, setRowsError] = useState<ErrorInfo | null>(null);
  const [released, setReleased] = useState<string | null>(null);
  const [sort, setSort] = useState<SortKey[]>([]);
  const [filters, setFilters] = useState<Filter[]>([]);
  const [search, setSearch] = useState("");
  const [searchInput, setSearchInput] = useState("");
  const [widths, setWidths] = useState<number[]>([]);
  const [filterOpen, setFilterOpen] = useState(false);
  const [filterColumn, setFilterColumn] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const [lastTotal, setLastTotal] = useState(0);
  const [reopen, setReopen] = useState(0);
  const waiter = useDoneWaiter(ctx.events);
  const rowsMark = useRef(0); // the done count when the failing rows request started
  const keepQuery = useRef(false);
  const gridId = useMemo(() => `rp-dv-${++paneSeq}`, []);

  const query: RowsQuery = useMemo(() => ({ sort, filters, search: search.trim() === "" ? null : search.trim() }), [sort, filters, search]);

  const closeView = (v: OpenView | null) => {
    if (!v) return;
    v.loader.dispose();
    ctx.api.del(wsPath(ctx, "views", v.info.view_id), { language: v.language }).catch(() => undefined);
  };

  /** open the same table again (its variable changed): sort, filters and search stay */
  const reload = () => {
    keepQuery.current = true;
    setReopen((n) => n + 1);
  };

  // open a view for each new request (closing the previous one)
  useEffect(() => {
    const keep = keepQuery.current && viewRef.current !== null;
    keepQuery.current = false;
    if (!released) closeView(viewRef.current);
    if (!request || (!request.name && !request.expr)) {
      viewRef.current = null;
      setView(null);
      return;
    }
    let live = true;
    viewRef.current = null;
    setView(null);
    setOpening(true);
    setOpenError(null);
    setRowsError(null);
    setReleased(null);
    const mark = waiter.mark();
    const body = { language: request.language, ...(request.name ? { name: request.name } : { expr: request.expr }) };
    withBusyRetry(() => ctx.api.post<ViewInfo>(wsPath(ctx, "views"), body)).then(
      (info) => {
        if (!live) {
          ctx.api.del(wsPath(ctx, "views", info.view_id), { language: request.language }).catch(() => undefined);
          return;
        }
        const columns = Array.isArray(info.columns) ? info.columns : [];
        info = { ...info, columns };
        const cache = new PageCache(pageSizeFor(columns.length));
        const language = request.language;
        const loader = new RowLoader(
          info.view_id,
          cache,
          (q, offset, limit) => {
            rowsMark.current = waiter.mark();
            return withBusyRetry(() =>
              ctx.api.post<RowsAnswer>(wsPath(ctx, "views", info.view_id, "rows"), {
                language,
                offset,
                limit,
                sort: q.sort,
                filters: q.filters,
                ...(q.search ? { search: q.search } : {}),
              }),
            );
          },
          (qk) => {
            if (qk === loader.key) {
              setRowsError(null);
              setTick((n) => n + 1);
            }
          },
          (e) => {
            const err = errorInfo(e);
            if (err.code === "view_not_found") setReleased("This view no longer exists.");
            else {
              if (err.code === "kernel_busy" || err.code === "session_unavailable")
                waiter.after(rowsMark.current, () => {
                  if (viewRef.current?.loader === loader) loader.retry();
                });
              setRowsError(err);
            }
          },
        );
        const names = new Set(columns.map((c) => c.name));
        const nextSort = keep ? sort.filter((k) => names.has(k.column)) : [];
        const nextFilters = keep ? filters.filter((f) => names.has(f.column)) : [];
        const nextSearch = keep ? search : "";
        if (!keep) {
          setSort([]);
          setFilters([]);
          setSearch("");
          setSearchInput("");
        } else {
          setSort(nextSort);
          setFilters(nextFilters);
        }
        setWidths(columns.map((c) => defaultWidth(c.name, columnClass(c))));
        setLastTotal(info.nrow);
        loader.setQuery({ sort: nextSort, filters: nextFilters, search: nextSearch.trim() || null });
        loader.want(0, cache.pageSize);
        const v: OpenView = { info, language, request, cache, loader };
        viewRef.current = v;
        setView(v);
        setOpening(false);
      },
      (e: unknown) => {
        if (!live) return;
        const err = errorInfo(e);
        if (err.code === "kernel_busy" || err.code === "session_unavailable") waiter.after(mark, () => live && setReopen((n) => n + 1));
        setOpenError(err);
        setOpening(false);
      },
    );
    return () => {
      live = false;
    };
  }, [request, reopen]);

  // close the view when the pane goes away
  useEffect(
    () => () => {
      closeView(viewRef.current);
      viewRef.current = null;
    },
    [],
  );

  useEffect(() => {
    view?.loader.setQuery(query);
  }, [view, query]);

  // the search box applies after a pause in typing
  useEffect(() => {
    const t = setTimeout(() => {
      if (searchInput !== search) {
        view?.loader.want(0, view.cache.pageSize);
        setSearch(searchInput);
      }
    }, SEARCH_DEBOUNCE_MS);
    return () => clearTimeout(t);
  }, [searchInput]);

  useEvents(ctx.events, (ev: AnyEvent) => {
    const v = viewRef.current;
    if (ev.type === "view_released" && v && Array.isArray(ev.view_ids) && ev.view_ids.includes(v.info.view_id) && (!ev.language || ev.language === v.language)) {
      v.loader.dispose();
      setReleased(typeof ev.reason === "string" && ev.reason ? ev.reason : "the variable changed");
    }
  });

  // the grid reports its visible rows; ask for their pages after a short pause
  const rangeTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(rangeTimer.current), []);
  const onRange = (start: number, end: number) => {
    clearTimeout(rangeTimer.current);
    rangeTimer.current = setTimeout(() => {
      const v = viewRef.current;
      if (!v) return;
      const margin = Math.floor(v.cache.pageSize / 2);
      v.loader.want(Math.max(0, start - margin), end + margin);
    }, RANGE_DEBOUNCE_MS);
  };

  // the current query's rows (also right after a change, before the loader hears of it)
  const qk = view ? queryKey(view.info.view_id, query) : "";
  const knownTotal = view ? view.cache.total(qk) : undefined;
  useEffect(() => {
    if (knownTotal !== undefined) setLastTotal(knownTotal);
  }, [knownTotal]);
  const total = knownTotal ?? lastTotal;
  const classes = useMemo(() => (view ? view.info.columns.map((c) => columnClass(c)) : []), [view]);
  const resetKey = view ? `${view.info.view_id}|${JSON.stringify(filters)}|${search}` : "";

  const changeFilters = (next: Filter[]) => {
    view?.loader.want(0, view.cache.pageSize);
    setFilters(next);
  };

  if (!request || (!request.name && !request.expr)) {
    return (
      <section class="rp-pane rp-data" data-testid="data-pane" aria-label="Data viewer">
        <div class="rp-empty">Click a table in the Environment pane to view it here.</div>
      </section>
    );
  }

  const title = request.name ?? request.expr ?? "";
  return (
    <section class="rp-pane rp-data" data-testid="data-pane" aria-label={`Data viewer: ${title}`}>
      <div class="rp-toolbar">
        <span class="rp-mono rp-ellipsis rp-strong" title={title}>
          {title}
        </span>
        {view && (
          <span class="rp-muted" data-testid="data-total" data-value={total}>
            {knownTotal !== undefined && knownTotal !== view.info.nrow
              ? `${formatCount(knownTotal)} of ${formatCount(view.info.nrow)} rows`
              : `${formatCount(view.info.nrow)} rows`}{" "}
            × {formatCount(view.info.ncol)} columns
          </span>
        )}
        <span class="rp-spacer" />
        {view && (
          <>
            <input
              type="search"
              class="rp-dv-search"
              data-testid="data-search"
              placeholder="Search all columns…"
              aria-label="Search all columns"
              value={searchInput}
              onInput={(e) => setSearchInput((e.currentTarget as HTMLInputElement).value)}
            />
            <button
              type="button"
              class={`rp-btn${filterOpen ? " rp-pressed" : ""}`}
              data-testid="data-filter-toggle"
              aria-pressed={filterOpen}
              onClick={() => {
                setFilterColumn(null);
                setFilterOpen(!filterOpen);
              }}
            >
              Filter{filters.length ? ` (${filters.length})` : ""}
            </button>
            {sort.length > 0 && (
              <button type="button" class="rp-btn" onClick={() => setSort([])} title="Show the rows in their original order">
                Unsort
              </button>
            )}
          </>
        )}
        <button type="button" class="rp-btn" onClick={reload} title="Open the view again">
          ⟳
        </button>
      </div>
      {released && (
        <div class="rp-status rp-banner" data-testid="data-released" role="status">
          The variable changed — reload ({released}){" "}
          <button type="button" class="rp-btn" data-testid="data-reload" onClick={reload}>
            Reload
          </button>
        </div>
      )}
      {opening && <div class="rp-empty">opening {title}…</div>}
      {openError && (
        <div class={`rp-status${openError.code === "kernel_busy" ? "" : " rp-error"}`} role="status" data-testid="data-error">
          {describeError(openError, request)}
        </div>
      )}
      {rowsError && (
        <div class={`rp-status${rowsError.code === "kernel_busy" ? "" : " rp-error"}`} role="status" data-testid="data-error">
          {describeError(rowsError, request)}{" "}
          {rowsError.code !== "kernel_busy" && (
            <button type="button" class="rp-link" onClick={() => view?.loader.retry()}>
              retry
            </button>
          )}
        </div>
      )}
      {view && (
        <>
          <FilterPanel
            columns={view.info.columns}
            classes={classes}
            filters={filters}
            open={filterOpen}
            column={filterColumn}
            onAdd={(f) => changeFilters([...filters, f])}
            onRemove={(i) => changeFilters(filters.filter((_, j) => j !== i))}
            onClear={() => changeFilters([])}
          />
          <Grid
            id={gridId}
            columns={view.info.columns}
            classes={classes}
            widths={widths}
            total={total}
            language={view.language}
            getRow={(i) => view.cache.row(qk, i)}
            sort={sort}
            filtered={new Set(filters.map((f) => f.column))}
            tick={tick}
            resetKey={resetKey}
            onSort={(column, additive) => setSort((s) => cycleSort(s, column, additive))}
            onFilterColumn={(column) => {
              setFilterColumn(column);
              setFilterOpen(true);
            }}
            onResize={(col, w) => setWidths((ws) => ws.map((x, i) => (i === col ? w : x)))}
            onRange={onRange}
          />
        </>
      )}
    </section>
  );
}
