// The panes of the workspace view (helper "panes"). Each gets the shell's PaneContext
// (src/contract.ts) and renders one area; the shell owns layout, socket and REST client.
//
// data-testid attributes (stable, used by the end-to-end tests):
//   EnvironmentPane: env-pane, env-language (select), env-row (data-name), env-child-row
//     (data-name), env-expand, env-delete, env-clear
//   PlotsPane: plots-pane, plot-image (data-rendered="true|false"), plot-prev, plot-next,
//     plot-position ("n of N"), plot-thumb, plot-download-png, plot-download-svg,
//     plot-download-pdf, plot-delete
//   ViewerPane: viewer-pane, viewer-frame (iframe / img), viewer-popout, viewer-download,
//     publish-open (html documents; also in the Plots pane's toolbar)
//   PublishDialog: publish-dialog, publish-audience (select), publish-submit,
//     publish-audience-only, publish-close, publish-error, publish-current (data-audience),
//     publish-link (input), publish-copy, publish-new-link, publications-list,
//     publication-row (data-id, data-audience), publication-unpublish
//   HelpPane: help-pane, help-search-input, help-search-result, help-page, help-back,
//     help-forward, help-error, help-choices, help-choice (data-package), help-find-input,
//     help-find-count, help-find-prev, help-find-next
//   DataViewerPane: data-pane, data-grid, data-header (data-column), data-header-filter,
//     data-row (data-row = 0-based position), data-cell, data-filter-toggle,
//     data-filter-column, data-filter-op, data-filter-value, data-filter-value2 (between),
//     data-filter-apply, data-filter-chip, data-filter-remove, data-search, data-total
//     (data-value = rows after filters), data-released, data-reload, data-error
//   HistoryPane: history-pane, history-file (select), history-reload, history-error,
//     history-run (data-id, data-status), history-run-toggle, history-status,
//     history-command, history-details, history-environment, history-transcript,
//     history-output (data-kind), history-plot, history-output-link, history-open-document
//   PackagesPane: packages-pane, packages-language (select python/r), packages-source
//     (select), packages-filter, packages-reload, packages-error, packages-row (data-name,
//     data-source = base|environment|overlay), packages-add (overlay rows, writers only)
import "./panes.css";

export { DataViewerPane } from "./data/DataViewerPane";
export { EnvironmentPane } from "./env/EnvironmentPane";
export { HelpPane } from "./help/HelpPane";
export { HistoryPane } from "./history/HistoryPane";
export { PackagesPane } from "./packages/PackagesPane";
export { PlotsPane } from "./plots/PlotsPane";
export { ViewerPane } from "./viewer/ViewerPane";
