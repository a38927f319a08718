// Pure state logic of the Environment pane: a listing of one language's variables kept up
// to date by the pushed `env` events (no polling).
//
// Versions: the environment endpoint answers with the kernel's diff version at the time
// of the listing (a listing also resets the kernel's diff baseline), so an event whose
// version is not newer than the listing is already in it. `reset` (the kernel restarted)
// forgets everything: the caller reloads.

import type { EnvEvent, EnvListingAnswer, VarSummary } from "./types";

export interface Listing {
  version: number;
  variables: VarSummary[]; // sorted by name
}

export const EMPTY_LISTING: Listing = { version: 0, variables: [] };

export function compareNames(a: string, b: string): number {
  const la = a.toLowerCase();
  const lb = b.toLowerCase();
  if (la !== lb) return la < lb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sortVariables(vars: readonly VarSummary[]): VarSummary[] {
  return [...vars].sort((x, y) => compareNames(x.name, y.name));
}

export function listingFromAnswer(answer: EnvListingAnswer): Listing {
  return {
    version: Number(answer.version) || 0,
    variables: sortVariables(Array.isArray(answer.variables) ? answer.variables : []),
  };
}

export interface ApplyResult {
  listing: Listing;
  /** the kernel restarted: load the listing again */
  reload: boolean;
  /** names whose value changed or went away (their expanded children are stale) */
  changed: string[];
}

/** Apply one `env` event of this listing's language. */
export function applyEnvEvent(listing: Listing, ev: EnvEvent): ApplyResult {
  if (ev.reset) {
    return { listing: { ...EMPTY_LISTING }, reload: true, changed: listing.variables.map((v) => v.name) };
  }
  if (ev.version <= listing.version) return { listing, reload: false, changed: [] };
  const byName = new Map(listing.variables.map((v) => [v.name, v] as const));
  const changed: string[] = [];
  for (const name of ev.removed ?? []) {
    if (byName.delete(name)) changed.push(name);
  }
  for (const v of ev.assigned ?? []) {
    if (!v || typeof v.name !== "string") continue;
    byName.set(v.name, v);
    changed.push(v.name);
  }
  return {
    listing: { version: ev.version, variables: sortVariables([...byName.values()]) },
    reload: false,
    changed,
  };
}

/** Events that arrived while the listing was loading, applied on top of it. */
export function applyEnvEvents(listing: Listing, events: readonly EnvEvent[]): ApplyResult {
  let cur: ApplyResult = { listing, reload: false, changed: [] };
  for (const ev of events) {
    const next = applyEnvEvent(cur.listing, ev);
    cur = { listing: next.listing, reload: cur.reload || next.reload, changed: [...cur.changed, ...next.changed] };
  }
  return cur;
}

/** A children path as a map key. */
export function pathKey(path: readonly (string | number)[]): string {
  return JSON.stringify(path);
}

/** Expanded paths that survive a change of these variables (others collapse). */
export function pruneExpanded(expanded: ReadonlySet<string>, changed: readonly string[], all = false): Set<string> {
  if (all) return new Set();
  if (changed.length === 0) return new Set(expanded);
  const gone = new Set(changed);
  const out = new Set<string>();
  for (const key of expanded) {
    const path = JSON.parse(key) as unknown[];
    if (!gone.has(String(path[0]))) out.add(key);
  }
  return out;
}

/** Children of an expanded node, loaded page by page. */
export interface ChildPage {
  total: number;
  children: VarSummary[];
}

export function appendChildren(prev: ChildPage | undefined, page: { total: number; offset: number; children: VarSummary[] }): ChildPage {
  const have = prev && page.offset > 0 ? prev.children.slice(0, page.offset) : [];
  return { total: page.total, children: [...have, ...page.children] };
}

/** The language the pane shows: the pinned one, else the console's (while the session
 * offers it), else the session's first. */
export function envLanguage<L extends string>(pinned: L | null, consoleLanguage: L, languages: readonly L[]): L {
  if (pinned !== null && languages.includes(pinned)) return pinned;
  if (languages.includes(consoleLanguage)) return consoleLanguage;
  return languages[0] ?? consoleLanguage;
}

/** The line above the table for a listing's status, given the session's state as the
 * console shows it: "no session" only when the session is not starting or running (the
 * listing may have been asked just before it ran; it is asked again when it does). */
export function envNotice(status: string, sessionState: string, message: string): { text: string; error: boolean } | null {
  if (status === "ready" || status === "loading") return null;
  if (status === "no_session") {
    const gone = sessionState === "stopped" || sessionState === "dead" || sessionState === "stopping";
    return { text: gone ? "no session — it starts with the next run" : "waiting for the session…", error: false };
  }
  return { text: message, error: status === "error" };
}
