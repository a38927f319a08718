// Loads one language's variables and keeps them current with pushed `env` events.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import type { Language, PaneContext, AnyEvent } from "../../contract";
import { errorInfo, withBusyRetry, wsPath } from "../common/api";
import { useDoneWaiter } from "../common/doneWaiter";
import { useEvents } from "../common/useEvents";
import { applyEnvEvent, applyEnvEvents, EMPTY_LISTING, listingFromAnswer, type Listing } from "./envState";
import type { EnvEvent, EnvListingAnswer } from "./types";

export type EnvStatus = "loading" | "ready" | "busy" | "no_session" | "error";

export interface EnvListingState {
  listing: Listing;
  status: EnvStatus;
  message: string;
  notStarted: boolean;
  /** bumps when variables changed (names in `changed`) or everything was replaced */
  changes: { names: string[]; all: boolean; n: number };
  reload: () => void;
  removeLocally: (names: string[] | "all") => void;
}

export function useEnvListing(ctx: PaneContext, language: Language, hidden: boolean): EnvListingState {
  const sessionState = ctx.sessionState;
  const [listing, setListing] = useState<Listing>(EMPTY_LISTING);
  const [status, setStatus] = useState<EnvStatus>("loading");
  const [message, setMessage] = useState("");
  const [notStarted, setNotStarted] = useState(false);
  const [changes, setChanges] = useState({ names: [] as string[], all: true, n: 0 });
  const gen = useRef(0);
  const pending = useRef<EnvEvent[]>([]);
  const statusRef = useRef<EnvStatus>("loading");
  const listingRef = useRef<Listing>(EMPTY_LISTING);
  const waiter = useDoneWaiter(ctx.events);

  const setBoth = (s: EnvStatus) => {
    statusRef.current = s;
    setStatus(s);
  };
  const put = (l: Listing, names: string[], all: boolean) => {
    listingRef.current = l;
    setListing(l);
    setChanges((c) => ({ names, all, n: c.n + 1 }));
  };

  const load = useCallback(() => {
    const my = ++gen.current;
    pending.current = [];
    setBoth("loading");
    const mark = waiter.mark();
    const again = () => {
      if (my === gen.current) load();
    };
    withBusyRetry(() =>
      ctx.api.get<EnvListingAnswer>(wsPath(ctx, "environment"), { language, hidden: hidden ? true : undefined }),
    ).then(
      (answer) => {
        if (my !== gen.current) return;
        const base = listingFromAnswer(answer);
        const applied = applyEnvEvents(base, pending.current);
        pending.current = [];
        setNotStarted(answer.kernel === "not_started");
        put(applied.listing, [], true);
        setMessage("");
        setBoth("ready");
        if (applied.reload) load();
      },
      (e: unknown) => {
        if (my !== gen.current) return;
        const err = errorInfo(e);
        if (err.code === "kernel_busy") {
          setBoth("busy");
          setMessage("busy — updates when it finishes");
          waiter.after(mark, again);
        } else if (err.code === "session_not_running") {
          put(EMPTY_LISTING, [], true);
          setBoth("no_session");
          setMessage("no session");
        } else if (err.code === "session_unavailable") {
          setBoth("busy");
          setMessage("the session is reconnecting — updates when it answers");
          waiter.after(mark, again);
        } else {
          setBoth("error");
          setMessage(err.message);
          waiter.after(mark, again);
        }
      },
    );
  }, [ctx.api, ctx.workspaceId, language, hidden]);

  useEffect(() => {
    put(EMPTY_LISTING, [], true);
    load();
    return () => {
      gen.current++;
    };
  }, [load]);

  // The shell saw the session run (the console says Ready): a listing that found no
  // session, or is waiting for one, asks again.
  useEffect(() => {
    const s = statusRef.current;
    if (sessionState === "running" && s !== "ready" && s !== "loading") load();
  }, [sessionState]);

  useEvents(ctx.events, (ev: AnyEvent) => {
    const s = statusRef.current;
    if (ev.type === "env") {
      if (ev.language !== language) return;
      const e = ev as unknown as EnvEvent;
      if (s === "loading") {
        pending.current.push(e);
        return;
      }
      if (s !== "ready") {
        load(); // the session answers again
        return;
      }
      const r = applyEnvEvent(listingRef.current, e);
      if (r.listing !== listingRef.current) put(r.listing, r.changed, r.reload);
      if (r.reload) load();
    } else if (ev.type === "session") {
      if (ev.state === "ready") load();
      else if (ev.state === "stopped" || ev.state === "dead") {
        gen.current++;
        put(EMPTY_LISTING, [], true);
        setBoth("no_session");
        setMessage("no session");
      }
    }
  });

  const removeLocally = useCallback((names: string[] | "all") => {
    const cur = listingRef.current;
    const keep = names === "all" ? [] : cur.variables.filter((v) => !names.includes(v.name));
    put({ version: cur.version, variables: keep }, names === "all" ? [] : names, names === "all");
  }, []);

  return { listing, status, message, notStarted, changes, reload: load, removeLocally };
}
