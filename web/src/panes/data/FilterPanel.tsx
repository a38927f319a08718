// The data viewer's filter editor: column, typed operator, value(s); the active filters as
// removable chips.
import { useEffect, useState } from "preact/hooks";
import { buildFilter, type ColumnClass, describeFilter, opInfo, opsFor } from "./filters";
import type { Filter, FilterOp, ViewColumn } from "./types";

export interface FilterPanelProps {
  columns: ViewColumn[];
  classes: ColumnClass[];
  filters: Filter[];
  open: boolean;
  /** preselected column (a header's filter button) */
  column: string | null;
  onAdd: (f: Filter) => void;
  onRemove: (index: number) => void;
  onClear: () => void;
}

export function FilterPanel({ columns, classes, filters, open, column, onAdd, onRemove, onClear }: FilterPanelProps) {
  const [col, setCol] = useState<string>(column ?? columns[0]?.name ?? "");
  const idx = Math.max(0, columns.findIndex((c) => c.name === col));
  const cls = classes[idx] ?? "other";
  const ops = opsFor(cls);
  const [op, setOp] = useState<FilterOp>(ops[0]!.op);
  const [value, setValue] = useState("");
  const [value2, setValue2] = useState("");
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (column) setCol(column);
  }, [column]);
  // the operators depend on the column's type
  useEffect(() => {
    if (!ops.some((o) => o.op === op)) setOp(ops[0]!.op);
    setError(null);
  }, [col]);

  const arity = opInfo(op)?.arity ?? "one";
  const apply = (e?: Event) => {
    e?.preventDefault();
    const r = buildFilter(columns[idx]?.name ?? col, cls, op, value, value2);
    if ("error" in r) {
      setError(r.error);
      return;
    }
    setError(null);
    onAdd(r.filter);
    setValue("");
    setValue2("");
  };

  return (
    <div class="rp-dv-filters">
      {filters.length > 0 && (
        <ul class="rp-chips" aria-label="Active filters">
          {filters.map((f, i) => (
            <li key={i} class="rp-chip" data-testid="data-filter-chip">
              <span>{describeFilter(f)}</span>
              <button type="button" class="rp-icon" data-testid="data-filter-remove" aria-label={`Remove filter ${describeFilter(f)}`} onClick={() => onRemove(i)}>
                ×
              </button>
            </li>
          ))}
          <li>
            <button type="button" class="rp-link" onClick={onClear}>
              clear filters
            </button>
          </li>
        </ul>
      )}
      {open && (
        <form class="rp-dv-filter-form" onSubmit={apply} aria-label="Add a filter">
          <select aria-label="Column" data-testid="data-filter-column" value={col} onChange={(e) => setCol((e.currentTarget as HTMLSelectElement).value)}>
            {columns.map((c) => (
              <option key={c.index} value={c.name}>
                {c.name}
              </option>
            ))}
          </select>
          <select aria-label="Operator" data-testid="data-filter-op" value={op} onChange={(e) => setOp((e.currentTarget as HTMLSelectElement).value as FilterOp)}>
            {ops.map((o) => (
              <option key={o.op} value={o.op}>
                {o.label}
              </option>
            ))}
          </select>
          {arity !== "none" && (
            <input
              aria-label={arity === "two" ? "From" : "Value"}
              data-testid="data-filter-value"
              value={value}
              placeholder={
                arity === "list" ? "a, b, c" : arity === "pattern" ? "regular expression" : cls === "logical" ? "TRUE / FALSE" : arity === "two" ? "from" : "value"
              }
              onInput={(e) => setValue((e.currentTarget as HTMLInputElement).value)}
            />
          )}
          {arity === "two" && (
            <input
              aria-label="To"
              data-testid="data-filter-value2"
              value={value2}
              placeholder="to"
              onInput={(e) => setValue2((e.currentTarget as HTMLInputElement).value)}
            />
          )}
          <button type="submit" class="rp-btn" data-testid="data-filter-apply">
            Add filter
          </button>
          {error && (
            <span class="rp-error" role="alert">
              {error}
            </span>
          )}
        </form>
      )}
    </div>
  );
}
