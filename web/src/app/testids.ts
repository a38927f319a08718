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
//   link-invalid                               the login page's note on a used/expired link
//
// Accounts
//   choose-password                            the forced "choose your password" page (a user
//                                              without a password, e.g. after a one-time link)
//   password-new, password-repeat, password-current, password-submit, password-error
//                                              the password form (choose and change)
//   account-button, account-dialog             the top bar's Account (change password)
//
// Admin (#/admin)
//   new-user-name, new-user-admin, new-user-submit   add a user (no password: a link)
//   login-link-dialog, login-link                    the one-time link to hand over
//   user-row                                   one per user, with data-user=<name>,
//                                              data-disabled and data-admin (true|false)
//   user-disable, user-admin, user-reset, user-sessions   a row's actions
//   user-sessions-dialog, user-session-row     that user's sessions
//
// Shared with me (#/shared): the publications the user can see
//   shared-link                                the top bar's link to the page
//   shared-page                                the page
//   shared-row                                 one per publication, data-id, data-kind,
//                                              data-audience, data-role (owner|editor|viewer|"")
//   shared-open                                the publication's link (new tab)
//   shared-audience, shared-republish, shared-new-link, shared-unpublish
//                                              an owner's or editor's actions on a row
//
// Sharing (workspace view)
//   share-button, share-dialog                 who has access; owners add, change, remove
//   member-row                                 one per person, data-user, data-role
//   member-role, member-remove                 a member's role select and remove button
//   share-user, share-role, share-submit       add a member by user name with a role
//   read-only-notice                           why a viewer cannot run or save
//
// Workspace view (#/ws/<id>)
//   files-pane                   the Files pane
//   file-item                    one per file, with data-path=<workspace path>
//   editor                       the Editor pane
//   follow-select                the editor's "Follow <name> (<their file>)": scroll with their
//                                cursor, open the files they switch to; data-following=<name>|""
//   editor-tab                   one per open file, with data-path, data-dirty=true|false (edits in no version yet) and data-sync=connecting|synced|offline|closed
//   save-button, run-button, source-button, render-button   the editor's toolbar
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
//   interrupt-button, restart-button  (restart's text names the console's language)
//   restart-confirm              the dialog asking before a restart when others are attached
//   command-palette              the command palette / shortcut sheet (F1, Ctrl+Shift+P)
//   command-filter               its search field
//   command-item                 one command, data-command=<id> (e.g. editor.source)
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
  linkInvalid: "link-invalid",
  choosePassword: "choose-password",
  passwordNew: "password-new",
  passwordRepeat: "password-repeat",
  passwordCurrent: "password-current",
  passwordSubmit: "password-submit",
  passwordError: "password-error",
  accountButton: "account-button",
  accountDialog: "account-dialog",
  newUserName: "new-user-name",
  newUserAdmin: "new-user-admin",
  newUserSubmit: "new-user-submit",
  loginLinkDialog: "login-link-dialog",
  loginLink: "login-link",
  userRow: "user-row",
  userDisable: "user-disable",
  userAdmin: "user-admin",
  userReset: "user-reset",
  userSessions: "user-sessions",
  userSessionsDialog: "user-sessions-dialog",
  userSessionRow: "user-session-row",
  sharedLink: "shared-link",
  sharedPage: "shared-page",
  sharedRow: "shared-row",
  sharedOpen: "shared-open",
  sharedAudience: "shared-audience",
  sharedRepublish: "shared-republish",
  sharedNewLink: "shared-new-link",
  sharedUnpublish: "shared-unpublish",
  shareButton: "share-button",
  exportRuns: "export-runs",
  shareDialog: "share-dialog",
  memberRow: "member-row",
  memberRole: "member-role",
  memberRemove: "member-remove",
  shareUser: "share-user",
  shareRole: "share-role",
  shareSubmit: "share-submit",
  readOnlyNotice: "read-only-notice",
  filesPane: "files-pane",
  fileItem: "file-item",
  editor: "editor",
  editorTab: "editor-tab",
  followSelect: "follow-select",
  saveButton: "save-button",
  runButton: "run-button",
  sourceButton: "source-button",
  renderButton: "render-button",
  console: "console",
  consoleInput: "console-input",
  consoleOutput: "console-output",
  consoleLine: "console-line",
  consoleLanguage: "console-language",
  interruptButton: "interrupt-button",
  restartButton: "restart-button",
  restartConfirm: "restart-confirm",
  commandPalette: "command-palette",
  commandFilter: "command-filter",
  commandItem: "command-item",
  sessionStatus: "session-status",
  connectionStatus: "connection-status",
  presence: "presence",
  sessionProfile: "session-profile",
  profileSelect: "profile-select",
  profileConfirm: "profile-confirm",
  sparkUiLink: "spark-ui-link",
  themeToggle: "theme-toggle",
} as const;

export type ToolTab = "environment" | "plots" | "viewer" | "help" | "data" | "history" | "packages";

export const paneTabId = (tab: ToolTab): string => `pane-tab-${tab}`;
