// The right-hand tab group (Environment, Plots, Viewer, Help, Data, History): role=tablist with
// arrow-key navigation. Every panel stays mounted (panes keep their state and their
// subscriptions); only the active one is shown.
import type { ComponentChildren } from "preact";
import { paneTabId, type ToolTab } from "./testids";

export const TOOL_TABS: Array<{ key: ToolTab; label: string }> = [
  { key: "environment", label: "Environment" },
  { key: "plots", label: "Plots" },
  { key: "viewer", label: "Viewer" },
  { key: "help", label: "Help" },
  { key: "data", label: "Data" },
  { key: "history", label: "History" },
  { key: "packages", label: "Packages" },
];

interface Props {
  active: ToolTab;
  onSelect(tab: ToolTab): void;
  panels: Record<ToolTab, ComponentChildren>;
}

export function ToolTabs({ active, onSelect, panels }: Props) {
  const onKeyDown = (e: KeyboardEvent) => {
    const i = TOOL_TABS.findIndex((t) => t.key === active);
    const n = TOOL_TABS.length;
    const j = { ArrowRight: (i + 1) % n, ArrowLeft: (i - 1 + n) % n, Home: 0, End: n - 1 }[e.key];
    if (j === undefined) return;
    e.preventDefault();
    onSelect(TOOL_TABS[j].key);
    document.getElementById(`tooltab-${TOOL_TABS[j].key}`)?.focus();
  };
  return (
    <div class="tool-tabs">
      <div class="tabbar" role="tablist" aria-label="Tools" onKeyDown={onKeyDown}>
        {TOOL_TABS.map((t) => (
          <button
            key={t.key}
            type="button"
            role="tab"
            id={`tooltab-${t.key}`}
            aria-controls={`toolpanel-${t.key}`}
            aria-selected={t.key === active}
            tabIndex={t.key === active ? 0 : -1}
            data-testid={paneTabId(t.key)}
            class={t.key === active ? "tab active" : "tab"}
            onClick={() => onSelect(t.key)}
          >
            {t.label}
          </button>
        ))}
      </div>
      {TOOL_TABS.map((t) => (
        <div
          key={t.key}
          role="tabpanel"
          id={`toolpanel-${t.key}`}
          aria-labelledby={`tooltab-${t.key}`}
          class="tool-panel"
          hidden={t.key !== active}
        >
          {panels[t.key]}
        </div>
      ))}
    </div>
  );
}
