// The data-testid values the end-to-end tests use. Keep them stable.
//
// Login and home
//   login-name, login-password, login-submit  the login form
//   home                                       the home page (projects and workspaces)
//   new-workspace-name, new-workspace-submit   create a workspace (in the first project,
//                                              or the one chosen in the project select;
//                                              a "default" project is made when none exists)
//   example-select, create-from-example        create a workspace from a bundled example;
//                                              its name is new-workspace-name if filled in,
//                                              else the example's name
//   workspace-link                             one per workspace, with data-name=<name>
//
// Workspace view (#/ws/<id>)
//   files-pane                   the Files pane
//   file-item                    one per file, with data-path=<workspace path>
//   editor                       the Editor pane
//   editor-tab                   one per open file, with data-path and data-dirty=true|false
//   save-button, run-button, source-button, render-button   the editor's toolbar
//   conflict-dialog, conflict-keep-mine, conflict-take-theirs   the save conflict dialog
//   console                      the Console pane
//   console-input                the console's input (a CodeMirror editor; its
//                                .cm-content is the editable element)
//   console-output               the scrolling output; data-total-lines = every line written
//                                (also those dropped from the view), data-dropped-lines
//   console-line                 one per *rendered* line (the output is virtualised: only
//                                lines near the visible area are in the DOM), with
//                                data-stream=stdout|stderr|error|result|echo|info|plot and
//                                data-line=<line number in the whole transcript, from 0>
//   console-language             the language select (r / python / bash)
//   interrupt-button, restart-button
//   session-status               data-state=starting|running|stopping|stopped|dead|unknown
//   connection-status            data-state=connecting|open|reconnecting|closed
//   presence                     the users attached; one [data-user=<name>] per user
//   session-profile              the session's profile, data-profile=<name> (text: the name
//                                when only one profile is offered)
//   profile-select               pick the profile to (re)start the session with; only when
//                                GET /api/profiles offers more than one
//   profile-confirm              the dialog confirming a restart with another profile
//   spark-ui-link                "Spark UI" (new tab); only when GET /api/spark has a ui_url
//   theme-toggle                 light/dark (also on the home page)
//   pane-tab-environment, pane-tab-plots, pane-tab-viewer, pane-tab-help, pane-tab-data
//                                the right-hand tabs (aria-selected=true when shown)
export const TID = {
  loginName: "login-name",
  loginPassword: "login-password",
  loginSubmit: "login-submit",
  home: "home",
  newWorkspaceName: "new-workspace-name",
  newWorkspaceSubmit: "new-workspace-submit",
  exampleSelect: "example-select",
  createFromExample: "create-from-example",
  workspaceLink: "workspace-link",
  filesPane: "files-pane",
  fileItem: "file-item",
  editor: "editor",
  editorTab: "editor-tab",
  saveButton: "save-button",
  runButton: "run-button",
  sourceButton: "source-button",
  renderButton: "render-button",
  conflictDialog: "conflict-dialog",
  conflictKeepMine: "conflict-keep-mine",
  conflictTakeTheirs: "conflict-take-theirs",
  console: "console",
  consoleInput: "console-input",
  consoleOutput: "console-output",
  consoleLine: "console-line",
  consoleLanguage: "console-language",
  interruptButton: "interrupt-button",
  restartButton: "restart-button",
  sessionStatus: "session-status",
  connectionStatus: "connection-status",
  presence: "presence",
  sessionProfile: "session-profile",
  profileSelect: "profile-select",
  profileConfirm: "profile-confirm",
  sparkUiLink: "spark-ui-link",
  themeToggle: "theme-toggle",
} as const;

export type ToolTab = "environment" | "plots" | "viewer" | "help" | "data";

export const paneTabId = (tab: ToolTab): string => `pane-tab-${tab}`;
