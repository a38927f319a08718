// The Console pane: language, session status, interrupt/restart, the output and the input.
import { useEffect, useState } from "preact/hooks";
import { SessionIndicator } from "../app/indicators";
import { TID } from "../app/testids";
import type { Language } from "../contract";
import type { SessionClient } from "../core/session";
import { LANGUAGE_LABEL, type SessionView } from "../core/workspace";
import { ConsoleInput } from "./ConsoleInput";
import { ConsoleOutput } from "./ConsoleOutput";
import type { ConsoleController } from "./controller";

interface Props {
  workspaceId: string;
  client: SessionClient;
  controller: ConsoleController;
  view: SessionView;
  language: Language;
  onLanguage(l: Language): void;
  /** restart the console language's kernel (the page asks first when others are attached) */
  onRestart(): void;
  canWrite: boolean;
}

function download(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The count of lines that no longer show (re-read when the output changes). */
function useDropped(controller: ConsoleController): number {
  const [dropped, setDropped] = useState(controller.model.dropped);
  useEffect(() => controller.changed.on(() => setDropped(controller.model.dropped)), [controller]);
  return dropped;
}

export function ConsolePane({ workspaceId, client, controller, view, language, onLanguage, onRestart, canWrite }: Props) {
  const dropped = useDropped(controller);
  const saveTranscript = () => download(`console-${workspaceId.slice(0, 8)}.txt`, controller.model.transcript());
  return (
    <div class="pane-body console-pane">
      <div class="pane-toolbar" role="toolbar" aria-label="Console">
        <label>
          <span class="visually-hidden">Console language</span>
          <select data-testid={TID.consoleLanguage} value={language} onChange={(e) => onLanguage(e.currentTarget.value as Language)}>
            {view.languages.map((l) => (
              <option key={l} value={l}>
                {LANGUAGE_LABEL[l]}
              </option>
            ))}
          </select>
        </label>
        <SessionIndicator view={view} />
        <span class="toolbar-fill" />
        <button type="button" class="icon" data-testid={TID.interruptButton} disabled={!canWrite} onClick={() => controller.interrupt()} title="Interrupt what runs">
          ■ Interrupt
        </button>
        <button
          type="button"
          class="icon"
          data-testid={TID.restartButton}
          disabled={!canWrite}
          onClick={onRestart}
          title={`Restart the ${LANGUAGE_LABEL[language]} kernel: its variables are lost for everyone in the workspace`}
        >
          ↻ Restart {LANGUAGE_LABEL[language]}
        </button>
        <button type="button" class="icon" onClick={() => controller.clear()} title="Clear the output (Ctrl+L)">
          Clear
        </button>
        <button type="button" class="icon" onClick={saveTranscript} title="Download the transcript">
          ⤓
          <span class="visually-hidden">Download the transcript</span>
        </button>
      </div>
      {dropped > 0 && (
        <div class="console-dropped">
          {dropped.toLocaleString()} earlier lines hidden —{" "}
          <button type="button" class="link" onClick={saveTranscript}>
            download the full transcript
          </button>
        </div>
      )}
      <ConsoleOutput controller={controller} />
      <ConsoleInput workspaceId={workspaceId} language={language} client={client} controller={controller} canWrite={canWrite} />
    </div>
  );
}
