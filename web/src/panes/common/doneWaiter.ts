// Waiting for the running code to finish: a session call that answered kernel_busy is
// asked again after the next `done` event — or at once when a `done` came while it was in
// flight (otherwise that done would be missed and the pane would wait for the next run).
import { useRef } from "preact/hooks";
import type { EventBus } from "../../contract";
import { useEvents } from "./useEvents";

export class DoneWaiter {
  private count = 0;
  private waiting: (() => void)[] = [];

  /** Take before a call; pass to `after` when it answered kernel_busy. */
  mark(): number {
    return this.count;
  }

  /** A `done` event arrived. */
  done(): void {
    this.count++;
    const w = this.waiting;
    this.waiting = [];
    for (const fn of w) fn();
  }

  /** Run `fn` after the next done event (now, if one came since `mark`). */
  after(mark: number, fn: () => void): void {
    if (this.count !== mark) fn();
    else this.waiting.push(fn);
  }

  clear(): void {
    this.waiting = [];
  }
}

/** A DoneWaiter fed by the session's events for the component's lifetime. */
export function useDoneWaiter(events: EventBus): DoneWaiter {
  const ref = useRef<DoneWaiter | null>(null);
  if (!ref.current) ref.current = new DoneWaiter();
  useEvents(events, (ev) => {
    if (ev.type === "done") ref.current!.done();
  });
  return ref.current;
}
