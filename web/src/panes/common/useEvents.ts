import { useEffect, useRef } from "preact/hooks";
import type { EventBus, AnyEvent } from "../../contract";

/** Subscribe to the session's events for the component's lifetime; the latest `fn` is
 * called (no resubscription when it changes). */
export function useEvents(events: EventBus, fn: (ev: AnyEvent, seq: number) => void): void {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => events.subscribe((ev, seq) => ref.current(ev, seq)), [events]);
}
