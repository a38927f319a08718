// Short messages to the user (PaneContext.notify): a stack of toasts in a live region.
import { useEffect, useState } from "preact/hooks";
import { Emitter } from "../core/emitter";

export type NoticeKind = "info" | "error";

interface Notice {
  id: number;
  message: string;
  kind: NoticeKind;
}

const notices = new Emitter<[Notice]>();
let counter = 0;

export function notify(message: string, kind: NoticeKind = "info"): void {
  notices.emit({ id: ++counter, message, kind });
}

/** The message of anything thrown (ApiError, Error, a string). */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function notifyError(e: unknown): void {
  notify(errorMessage(e), "error");
}

const SHOW_MS = { info: 4000, error: 9000 };

export function Toasts() {
  const [shown, setShown] = useState<Notice[]>([]);
  useEffect(
    () =>
      notices.on((n) => {
        setShown((s) => [...s.slice(-4), n]);
        setTimeout(() => setShown((s) => s.filter((x) => x.id !== n.id)), SHOW_MS[n.kind]);
      }),
    [],
  );
  return (
    <div class="toasts" role="status" aria-live="polite">
      {shown.map((n) => (
        <div key={n.id} class={`toast toast-${n.kind}`}>
          <span>{n.message}</span>
          <button
            type="button"
            class="icon"
            aria-label="Dismiss"
            onClick={() => setShown((s) => s.filter((x) => x.id !== n.id))}
          >
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
