// The virtualised data grid: fixed row height, only the visible rows and columns in the DOM,
// a scaled scroll position for tables taller than browsers can scroll, sticky header and
// row-label column, sortable and resizable headers, keyboard navigation (ARIA grid).
import type { JSX } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { formatCell, formatCount } from "../common/format";
import { useElementSize } from "../common/useElementSize";
import type { ColumnClass } from "./filters";
import type { CachedRow } from "./pageCache";
import { ariaSort, sortPosition } from "./sortCycle";
import type { SortKey, ViewColumn } from "./types";
import {
  clampVirtual,
  columnOffsets,
  ensureColumnVisible,
  ensureRowVisible,
  geometry,
  rowOffset,
  toScroll,
  toVirtual,
  visibleColumns,
  visibleRange,
} from "./virtual";

export const ROW_HEIGHT = 24;
export const HEADER_HEIGHT = 30;
const ROW_OVERSCAN = 8;
const COL_OVERSCAN = 2;
// jsdom and hidden panes have no layout: assume a size so that something renders
const FALLBACK = { width: 800, height: 480 };
const raf = (fn: () => void): number =>
  typeof requestAnimationFrame === "function" ? requestAnimationFrame(fn) : (setTimeout(fn, 16) as unknown as number);
const caf = (id: number): void => {
  if (typeof cancelAnimationFrame === "function") cancelAnimationFrame(id);
  else clearTimeout(id);
};

export interface GridProps {
  id: string; // prefix of element ids (aria-activedescendant)
  columns: ViewColumn[];
  classes: ColumnClass[];
  widths: number[];
  total: number;
  language: string;
  getRow: (i: number) => CachedRow | undefined;
  sort: SortKey[];
  /** bumps when rows arrive (re-render) */
  tick: number;
  /** scroll back to the top when this changes (a new filter/search) */
  resetKey: string;
  /** columns with a filter (their filter button is highlighted) */
  filtered: ReadonlySet<string>;
  onSort: (column: string, additive: boolean) => void;
  onFilterColumn: (column: string) => void;
  onResize: (col: number, width: number) => void;
  onRange: (start: number, end: number) => void;
}

interface ScrollState {
  st: number; // the container's scrollTop
  sl: number; // scrollLeft
  v: number; // virtual offset into the full table
}

export function Grid(props: GridProps) {
  const { columns, classes, widths, total, sort, id } = props;
  const scrollRef = useRef<HTMLDivElement>(null);
  const measured = useElementSize(scrollRef);
  const size = measured.width > 0 && measured.height > 0 ? measured : FALLBACK;
  const [scroll, setScroll] = useState<ScrollState>({ st: 0, sl: 0, v: 0 });
  // the latest scroll position (the state follows it once per animation frame)
  const scrollRefState = useRef(scroll);
  const lastSetTop = useRef(0);
  const frame = useRef(0);
  const [active, setActive] = useState<{ row: number; col: number }>({ row: -1, col: 0 });
  const [labelWidth, setLabelWidth] = useState(64);

  const g = geometry(total, ROW_HEIGHT, Math.max(ROW_HEIGHT, size.height - HEADER_HEIGHT));
  const offsets = columnOffsets(widths);
  const contentWidth = labelWidth + offsets[offsets.length - 1]!;
  const v = clampVirtual(scroll.v, g);
  const rows = visibleRange(v, g, ROW_OVERSCAN);
  const cols = visibleColumns(scroll.sl, Math.max(0, size.width - labelWidth), offsets, COL_OVERSCAN);

  useEffect(() => {
    props.onRange(rows.start, rows.end);
  }, [rows.start, rows.end, props.resetKey]);

  // a new filter / search / view: back to the top
  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (el) el.scrollTop = 0;
    lastSetTop.current = 0;
    scrollRefState.current = { ...scrollRefState.current, st: 0, v: 0 };
    setScroll(scrollRefState.current);
    setActive((a) => ({ row: Math.min(a.row, 0), col: a.col }));
  }, [props.resetKey]);

  // the row labels column grows to fit the labels seen (never shrinks while scrolling)
  useEffect(() => {
    let chars = formatCount(total).length;
    for (let i = rows.start; i < rows.end; i++) {
      const l = props.getRow(i)?.label;
      if (l !== null && l !== undefined) chars = Math.max(chars, String(l).length);
    }
    const want = Math.min(240, Math.max(56, chars * 7.5 + 20));
    if (want > labelWidth) setLabelWidth(Math.round(want));
  }, [props.tick, rows.start, rows.end, total]);

  useEffect(() => () => caf(frame.current), []);

  const applyScroll = (next: ScrollState) => {
    scrollRefState.current = next;
    caf(frame.current);
    frame.current = raf(() => setScroll(scrollRefState.current));
  };

  const onScroll = () => {
    const el = scrollRef.current;
    if (!el) return;
    const st = el.scrollTop;
    let nv = scrollRefState.current.v;
    // a scroll we did not set ourselves (scrollbar, keyboard of the browser): map it
    if (!g.scaled || Math.abs(st - lastSetTop.current) > 1) nv = toVirtual(st, g);
    lastSetTop.current = st;
    applyScroll({ st, sl: el.scrollLeft, v: nv });
  };

  // scaled mode: the wheel moves by its pixels in the full table, not by scaled pixels
  const onWheel = (e: WheelEvent) => {
    const el = scrollRef.current;
    if (!g.scaled || !el || e.ctrlKey) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? ROW_HEIGHT : e.deltaMode === 2 ? g.viewport : 1;
    const nv = clampVirtual(scrollRefState.current.v + e.deltaY * unit, g);
    const st = toScroll(nv, g);
    el.scrollTop = st;
    lastSetTop.current = el.scrollTop;
    if (e.deltaX) el.scrollLeft += e.deltaX * unit;
    applyScroll({ st: el.scrollTop, sl: el.scrollLeft, v: nv });
  };

  const moveTo = (row: number, col: number) => {
    const r = Math.max(-1, Math.min(total - 1, row));
    const c = Math.max(0, Math.min(columns.length - 1, col));
    setActive({ row: r, col: c });
    const el = scrollRef.current;
    const cur = scrollRefState.current;
    let nv = cur.v;
    if (r >= 0) nv = ensureRowVisible(r, cur.v, g);
    const sl = ensureColumnVisible(c, cur.sl, size.width, offsets, labelWidth);
    if (el) {
      if (nv !== cur.v) {
        el.scrollTop = toScroll(nv, g);
        lastSetTop.current = el.scrollTop;
      }
      if (sl !== cur.sl) el.scrollLeft = sl;
    }
    applyScroll({ st: el ? el.scrollTop : toScroll(nv, g), sl, v: nv });
  };

  const onKeyDown = (e: KeyboardEvent) => {
    const page = Math.max(1, Math.floor(g.viewport / ROW_HEIGHT) - 1);
    const { row, col } = active;
    let handled = true;
    switch (e.key) {
      case "ArrowDown":
        moveTo(row + 1, col);
        break;
      case "ArrowUp":
        moveTo(row - 1, col);
        break;
      case "ArrowRight":
        moveTo(row, col + 1);
        break;
      case "ArrowLeft":
        moveTo(row, col - 1);
        break;
      case "PageDown":
        moveTo(row + page, col);
        break;
      case "PageUp":
        moveTo(row - page, col);
        break;
      case "Home":
        moveTo(e.ctrlKey ? 0 : row, 0);
        break;
      case "End":
        moveTo(e.ctrlKey ? total - 1 : row, columns.length - 1);
        break;
      case "Enter":
      case " ":
        if (row === -1 && columns[col]) props.onSort(columns[col]!.name, e.shiftKey);
        else handled = false;
        break;
      default:
        handled = false;
    }
    if (handled) e.preventDefault();
  };

  const cellId = (row: number, col: number) => `${id}-r${row}-c${col}`;
  const colRange: number[] = [];
  for (let c = cols.start; c < cols.end; c++) colRange.push(c);

  const header = (
    <div class="rp-dv-header" role="row" aria-rowindex={1} style={{ width: `${contentWidth}px`, height: `${HEADER_HEIGHT}px` }}>
      <div class="rp-dv-corner" role="columnheader" style={{ width: `${labelWidth}px` }}>
        <span class="rp-sr">Row</span>
      </div>
      {colRange.map((c) => {
        const col = columns[c]!;
        const pos = sortPosition(sort, col.name);
        const isActive = active.row === -1 && active.col === c;
        return (
          <div
            key={c}
            id={cellId(-1, c)}
            role="columnheader"
            aria-colindex={c + 2}
            aria-sort={ariaSort(sort, col.name)}
            data-testid="data-header"
            data-column={col.name}
            class={`rp-dv-hcell${isActive ? " rp-active" : ""}`}
            style={{ left: `${labelWidth + offsets[c]!}px`, width: `${widths[c]!}px` }}
            title={`${col.name} (${col.type}) — click to sort, shift-click to add to the sort`}
            onClick={(e) => {
              setActive({ row: -1, col: c });
              props.onSort(col.name, e.shiftKey);
            }}
          >
            <span class="rp-dv-hname">{col.name}</span>
            {pos.order > 0 && (
              <span class="rp-dv-sort" aria-hidden="true">
                {pos.descending ? "▼" : "▲"}
                {sort.length > 1 ? pos.order : ""}
              </span>
            )}
            <button
              type="button"
              class={`rp-dv-hfilter${props.filtered.has(col.name) ? " rp-on" : ""}`}
              data-testid="data-header-filter"
              tabIndex={-1}
              aria-label={`Filter ${col.name}`}
              title={`Filter ${col.name}`}
              onClick={(e) => {
                e.stopPropagation();
                props.onFilterColumn(col.name);
              }}
            >
              <FunnelIcon />
            </button>
            <ResizeHandle width={widths[c]!} onResize={(w) => props.onResize(c, w)} />
          </div>
        );
      })}
    </div>
  );

  const body: JSX.Element[] = [];
  for (let r = rows.start; r < rows.end; r++) {
    const row = props.getRow(r);
    const top = HEADER_HEIGHT + rowOffset(r, v, scroll.st, ROW_HEIGHT);
    body.push(
      <div
        key={r}
        role="row"
        aria-rowindex={r + 2}
        data-testid="data-row"
        data-row={r}
        class={`rp-dv-row${r % 2 ? " rp-odd" : ""}${row ? "" : " rp-dv-loading"}`}
        style={{ top: `${top}px`, width: `${contentWidth}px`, height: `${ROW_HEIGHT}px` }}
      >
        <div class="rp-dv-label" role="rowheader" style={{ width: `${labelWidth}px` }}>
          {row ? (row.label ?? formatCount(r + 1)) : formatCount(r + 1)}
        </div>
        {colRange.map((c) => {
          const value = row?.cells[c];
          const isActive = active.row === r && active.col === c;
          const cls = classes[c];
          return (
            <div
              key={c}
              id={cellId(r, c)}
              role="gridcell"
              aria-colindex={c + 2}
              data-testid="data-cell"
              class={`rp-dv-cell${cls === "number" ? " rp-num" : ""}${isActive ? " rp-active" : ""}`}
              style={{ left: `${labelWidth + offsets[c]!}px`, width: `${widths[c]!}px` }}
              onClick={() => setActive({ row: r, col: c })}
            >
              {!row ? "" : value === null || value === undefined ? <span class="rp-na">NA</span> : formatCell(value, props.language)}
            </div>
          );
        })}
      </div>,
    );
  }

  const activeId = active.row < total && columns.length > 0 ? cellId(active.row, active.col) : undefined;
  return (
    <div
      ref={scrollRef}
      class="rp-dv-scroll"
      role="grid"
      tabIndex={0}
      aria-rowcount={total + 1}
      aria-colcount={columns.length + 1}
      aria-activedescendant={activeId}
      data-testid="data-grid"
      onScroll={onScroll}
      onWheel={onWheel}
      onKeyDown={onKeyDown}
    >
      <div class="rp-dv-canvas" style={{ width: `${contentWidth}px`, height: `${HEADER_HEIGHT + g.content}px` }}>
        {header}
        {body}
      </div>
    </div>
  );
}

function ResizeHandle({ width, onResize }: { width: number; onResize: (w: number) => void }) {
  const start = useRef<{ x: number; w: number } | null>(null);
  return (
    <span
      class="rp-dv-resize"
      aria-hidden="true"
      onClick={(e) => e.stopPropagation()}
      onPointerDown={(e) => {
        e.stopPropagation();
        e.preventDefault();
        start.current = { x: e.clientX, w: width };
        (e.currentTarget as HTMLElement).setPointerCapture?.(e.pointerId);
      }}
      onPointerMove={(e) => {
        if (!start.current) return;
        onResize(Math.max(40, Math.min(1200, Math.round(start.current.w + e.clientX - start.current.x))));
      }}
      onPointerUp={(e) => {
        start.current = null;
        (e.currentTarget as HTMLElement).releasePointerCapture?.(e.pointerId);
      }}
    />
  );
}

function FunnelIcon() {
  return (
    <svg width="10" height="10" viewBox="0 0 10 10" aria-hidden="true" focusable="false">
      <path d="M0.5 1h9L6 5.2V9L4 8V5.2z" fill="currentColor" />
    </svg>
  );
}
