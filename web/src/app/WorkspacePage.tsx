// The workspace view (#/ws/<id>): Files | Editor over Console | tools (Environment, Plots,
// Viewer, Help, Data, History), resizable; the session stream shared by all of them. The top bar
// has the Spark UI link, the session's profile (and picker), connection and presence.
// F1 / Ctrl+Shift+P open the command palette (workspaceCommands.ts).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Api, DataViewRequest, HelpRequest, Language, PaneContext } from "../contract";
import { ConsolePane } from "../console/ConsolePane";
import { ConsoleController } from "../console/controller";
import { Emitter } from "../core/emitter";
import { load, save } from "../core/storage";
import { LANGUAGE_LABEL, WorkspaceSession } from "../core/workspace";
import { EditorPane, type EditorCommand } from "../editor/EditorPane";
import { CommandPalette } from "./CommandPalette";
import { ConfirmDialog } from "./Dialog";
import { FilesPane } from "../files/FilesPane";
import {
  DataViewerPane,
  EnvironmentPane,
  HelpPane,
  HistoryPane,
  PackagesPane,
  PlotsPane,
  ViewerPane,
} from "../panes/index";
import { ConnectionIndicator, othersAttached, Presence } from "./indicators";
import { clampSizes, LIMITS, loadSizes, saveSizes, type PaneSizes } from "./layout";
import { VIEWER_WHY, type Me, type Member, type Workspace } from "./model";
import { errorMessage, notify } from "./notify";
import { SessionProfilePicker } from "./SessionProfilePicker";
import { ShareDialog } from "./ShareDialog";
import { SparkLink } from "./SparkLink";
import { Splitter } from "./Splitter";
import { TID, type ToolTab } from "./testids";
import { ThemeToggle } from "./theme";
import { ToolTabs } from "./ToolTabs";
import { useWorkspaceKeys, workspaceCommands } from "./workspaceCommands";

interface Props {
  api: Api;
  me: Me;
  workspaceId: string;
}

export function WorkspacePage({ api, me, workspaceId }: Props) {
  const [info, setInfo] = useState<Workspace | null>(null);
  const [loadError, setLoadError] = useState("");
  const ws = useMemo(() => new WorkspaceSession(workspaceId, api), [workspaceId]);
  const [view, setView] = useState(ws.view);
  const [tool, setTool] = useState<ToolTab>(() => load<ToolTab>("tooltab", "environment"));
  const [viewer, setViewer] = useState<{ path: string | null; n: number }>({ path: null, n: 0 });
  const [help, setHelp] = useState<HelpRequest | null>(null);
  const [dataView, setDataView] = useState<DataViewRequest | null>(null);
  const [plotPick, setPlotPick] = useState<{ id: string; n: number } | null>(null);
  const [language, setLanguage] = useState<Language>(() => load<Language>(`lang.${workspaceId}`, "r"));
  const [sizes, setSizes] = useState<PaneSizes>(loadSizes);
  const [sharing, setSharing] = useState(false);
  const [members, setMembers] = useState<Member[]>([]);
  const [palette, setPalette] = useState(false);
  const [confirmRestart, setConfirmRestart] = useState(false);
  const centre = useRef<HTMLDivElement>(null);
  const commands = useMemo(() => new Emitter<[EditorCommand]>(), []);

  const showTool = (t: ToolTab) => {
    setTool(t);
    save("tooltab", t);
  };
  const openers = useMemo(
    () => ({
      openHelp: (req: HelpRequest) => {
        setHelp(req);
        showTool("help");
      },
      openDataView: (req: DataViewRequest) => {
        setDataView(req);
        showTool("data");
      },
      openInViewer: (path: string) => {
        setViewer((v) => ({ path, n: v.n + 1 }));
        showTool("viewer");
      },
      openPlot: (id: string) => {
        setPlotPick((p) => ({ id, n: (p?.n ?? 0) + 1 }));
        showTool("plots");
      },
    }),
    [],
  );
  const controller = useMemo(() => new ConsoleController(ws.client, ws.stream, { ...openers, notify }), [ws]);

  const canWrite = info?.role === "owner" || info?.role === "editor";
  const ctx: PaneContext = useMemo(
    () => ({
      workspaceId,
      api,
      events: ws.stream,
      canWrite,
      languages: view.languages,
      consoleLanguage: language,
      sessionState: view.state,
      notify,
      ...openers,
    }),
    [ws, canWrite, view.languages, language, view.state],
  );

  useEffect(() => {
    api.get<Workspace[]>("/api/workspaces").then(
      (all) => {
        const w = all.find((x) => x.id === workspaceId);
        if (w) setInfo(w);
        else setLoadError("This workspace does not exist or you have no access to it.");
      },
      (e) => setLoadError(errorMessage(e)),
    );
    return ws.changed.on(setView);
  }, [ws]);

  // Who has access: the viewer's notice names the owners to ask.
  useEffect(() => {
    if (info) api.get<Member[]>(`/api/workspaces/${encodeURIComponent(workspaceId)}/members`).then(setMembers, () => setMembers([]));
  }, [info]);

  // Start the stream once the panes are mounted (they subscribe first, so the console
  // gets the session's whole stream).
  useEffect(() => {
    if (!info) return;
    ws.start();
    return () => ws.stop();
  }, [info]);

  useEffect(() => {
    if (view.connection.state === "closed" && view.connection.code === 4401) void api.get("/api/me").catch(() => undefined);
  }, [view.connection]);

  useEffect(() => {
    if (info) document.title = `${info.name} — rsparkhub`;
    return () => {
      document.title = "rsparkhub";
    };
  }, [info]);

  useEffect(() => {
    if (!view.languages.includes(language) && view.languages.length) setLanguage(view.languages[0]);
  }, [view.languages]);

  useWorkspaceKeys(() => setPalette(true));

  const resize = (part: Partial<PaneSizes>) =>
    setSizes((s) => {
      const next = clampSizes({ ...s, ...part });
      saveSizes(next);
      return next;
    });
  const chooseLanguage = (l: Language) => {
    setLanguage(l);
    save(`lang.${workspaceId}`, l);
  };

  if (loadError) {
    return (
      <main class="ws-error">
        <p role="alert">{loadError}</p>
        <a href="#/">Back to the workspaces</a>
      </main>
    );
  }
  if (!info) return <p class="loading">Loading…</p>;
  const owners = members.filter((m) => m.role === "owner" && m.user !== me.name).map((m) => m.user);
  const others = othersAttached(view.users, me.name);
  const restart = () => (others.length ? setConfirmRestart(true) : controller.restart(language));

  return (
    <div class="ws-page">
      <header class="topbar">
        <a class="brand" href="#/" title="All workspaces">
          rsparkhub
        </a>
        <h1 class="ws-title">
          {info.project && <span class="muted">{info.project} / </span>}
          {info.name}
          {!canWrite && (
            <span class="badge" title={VIEWER_WHY}>
              read only
            </span>
          )}
        </h1>
        <span class="topbar-fill" />
        <SparkLink api={api} sessionState={view.state} />
        <SessionProfilePicker
          api={api}
          workspaceId={workspaceId}
          view={view}
          canWrite={canWrite}
          notify={notify}
          onRestarted={() => ws.reattach("the session restarted with another profile")}
        />
        <button type="button" data-testid={TID.shareButton} onClick={() => setSharing(true)} title="Who has access; owners share the workspace">
          Share
        </button>
        <a
          class="button"
          href={api.url(`/api/workspaces/${workspaceId}/export`)}
          download
          data-testid={TID.exportRuns}
          title="A zip of the last run of each file: its files at the recorded versions, environment files and rerun.py, to re-run without the hub (docs/reproducibility.md)"
        >
          Export runs
        </a>
        <ConnectionIndicator status={view.connection} />
        <Presence users={view.users} me={me.name} />
        <ThemeToggle />
      </header>
      {!canWrite && (
        <p class="read-only-notice" role="note" data-testid={TID.readOnlyNotice}>
          You are a <strong>viewer</strong> of this workspace: you see its files and the session's output as it happens, but
          cannot run code or save. {owners.length ? `Ask ${owners.join(" or ")} to make you an editor.` : "Ask an owner to make you an editor."}
        </p>
      )}
      {palette && (
        <CommandPalette
          onClose={() => setPalette(false)}
          commands={workspaceCommands({
            canWrite,
            language,
            editor: (action) => commands.emit({ type: "action", action }),
            interrupt: () => controller.interrupt(),
            restart,
            clearConsole: () => controller.clear(),
            showTool,
            openPalette: () => setPalette(true),
          })}
        />
      )}
      {confirmRestart && (
        <ConfirmDialog
          testid={TID.restartConfirm}
          title={`Restart ${LANGUAGE_LABEL[language]}?`}
          message={`${others.join(", ")} ${others.length > 1 ? "are" : "is"} also attached to this workspace. Restarting ${LANGUAGE_LABEL[language]} loses its variables and loaded packages for everyone (files are kept).`}
          confirmLabel={`Restart ${LANGUAGE_LABEL[language]}`}
          onClose={() => setConfirmRestart(false)}
          onConfirm={() => {
            setConfirmRestart(false);
            controller.restart(language);
          }}
        />
      )}
      {sharing && (
        <ShareDialog
          api={api}
          workspaceId={workspaceId}
          workspaceName={info.name}
          canShare={info.role === "owner"}
          me={me.name}
          onChanged={setMembers}
          onClose={() => setSharing(false)}
        />
      )}
      <div
        class="ws-grid"
        style={{ gridTemplateColumns: `${sizes.files}px 5px minmax(320px, 1fr) 5px ${sizes.tools}px` }}
      >
        <section class="pane" aria-label="Files" data-testid={TID.filesPane}>
          <FilesPane
            api={api}
            workspaceId={workspaceId}
            stream={ws.stream}
            canWrite={canWrite}
            openSource={(path) => commands.emit({ type: "open", path })}
            sourceFile={(path) => commands.emit({ type: "source", path })}
            openInViewer={openers.openInViewer}
            onRenamed={(from, to) => commands.emit({ type: "renamed", from, to })}
            notify={notify}
          />
        </section>
        <Splitter
          orientation="vertical"
          label="Resize the Files pane"
          value={sizes.files}
          min={LIMITS.files[0]}
          max={LIMITS.files[1]}
          onDelta={(px) => resize({ files: sizes.files + px })}
        />
        <div class="ws-centre" ref={centre} style={{ gridTemplateRows: `${sizes.editor}fr 5px ${1 - sizes.editor}fr` }}>
          <section class="pane" aria-label="Editor" data-testid={TID.editor} tabIndex={-1}>
            <EditorPane
              api={api}
              workspaceId={workspaceId}
              client={ws.client}
              stream={ws.stream}
              controller={controller}
              consoleLanguage={language}
              canWrite={canWrite}
              user={me.name}
              commands={commands}
              notify={notify}
            />
          </section>
          <Splitter
            orientation="horizontal"
            label="Resize the Editor and the Console"
            value={sizes.editor * 100}
            min={LIMITS.editor[0] * 100}
            max={LIMITS.editor[1] * 100}
            onDelta={(px) => resize({ editor: sizes.editor + px / (centre.current?.clientHeight || 600) })}
          />
          <section class="pane" aria-label="Console" data-testid={TID.console}>
            <ConsolePane
              workspaceId={workspaceId}
              client={ws.client}
              controller={controller}
              view={view}
              language={language}
              onLanguage={chooseLanguage}
              onRestart={restart}
              canWrite={canWrite}
            />
          </section>
        </div>
        <Splitter
          orientation="vertical"
          label="Resize the tools pane"
          value={sizes.tools}
          min={LIMITS.tools[0]}
          max={LIMITS.tools[1]}
          onDelta={(px) => resize({ tools: sizes.tools - px })}
        />
        <section class="pane" aria-label="Tools">
          <ToolTabs
            active={tool}
            onSelect={showTool}
            panels={{
              environment: <EnvironmentPane ctx={ctx} />,
              plots: <PlotsPane ctx={ctx} select={plotPick} />,
              viewer: <ViewerPane key={viewer.n} ctx={ctx} path={viewer.path} />,
              help: <HelpPane ctx={ctx} request={help} />,
              data: <DataViewerPane ctx={ctx} request={dataView} />,
              history: <HistoryPane ctx={ctx} />,
              packages: <PackagesPane ctx={ctx} />,
            }}
          />
        </section>
      </div>
    </div>
  );
}
