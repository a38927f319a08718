// Pure logic of the Help pane: the back/forward history and where a clicked link leads.
import type { HelpRequest } from "../../contract";

export type HelpLanguage = "r" | "python";

export type HelpEntry =
  | { kind: "topic"; language: HelpLanguage; topic: string; package: string | null }
  | { kind: "search"; query: string; language: HelpLanguage | null };

export interface HelpHistory {
  entries: HelpEntry[];
  index: number; // -1 when empty
}

export const EMPTY_HISTORY: HelpHistory = { entries: [], index: -1 };
const MAX_ENTRIES = 100;

export function sameEntry(a: HelpEntry | null | undefined, b: HelpEntry | null | undefined): boolean {
  if (!a || !b || a.kind !== b.kind) return false;
  if (a.kind === "topic" && b.kind === "topic")
    return a.language === b.language && a.topic === b.topic && (a.package ?? "") === (b.package ?? "");
  if (a.kind === "search" && b.kind === "search") return a.query === b.query && a.language === b.language;
  return false;
}

/** Visit an entry: forward history is dropped (the current entry again changes nothing). */
export function pushEntry(h: HelpHistory, e: HelpEntry): HelpHistory {
  if (sameEntry(currentEntry(h), e)) return h;
  const entries = [...h.entries.slice(0, h.index + 1), e];
  const drop = Math.max(0, entries.length - MAX_ENTRIES);
  return { entries: entries.slice(drop), index: entries.length - 1 - drop };
}

export function currentEntry(h: HelpHistory): HelpEntry | null {
  return h.index >= 0 ? (h.entries[h.index] ?? null) : null;
}

export const canBack = (h: HelpHistory) => h.index > 0;
export const canForward = (h: HelpHistory) => h.index < h.entries.length - 1;
export const back = (h: HelpHistory): HelpHistory => (canBack(h) ? { ...h, index: h.index - 1 } : h);
export const forward = (h: HelpHistory): HelpHistory => (canForward(h) ? { ...h, index: h.index + 1 } : h);

/** The shell's request (from a `help` event or elsewhere) as a history entry. */
export function entryFromRequest(req: HelpRequest): HelpEntry | null {
  if (req.query !== undefined && req.query.trim() !== "") {
    return { kind: "search", query: req.query.trim(), language: req.language ?? null };
  }
  if (req.topic) return { kind: "topic", language: req.language, topic: req.topic, package: req.package || null };
  return null;
}

export type LinkTarget =
  | { kind: "help"; entry: HelpEntry }
  | { kind: "external"; href: string }
  | { kind: "anchor"; id: string }
  | { kind: "default" } // e.g. mailto: — the browser's own handling
  | { kind: "ignore" };

export interface LinkAttrs {
  href: string | null;
  topic: string | null;
  package: string | null;
  language: string | null;
}

/** Where a link of a help page leads: help links (data-help-*) stay in the pane. */
export function classifyLink(a: LinkAttrs, current: HelpLanguage = "r"): LinkTarget {
  if (a.topic) {
    const language: HelpLanguage = a.language === "python" ? "python" : a.language === "r" ? "r" : current;
    return { kind: "help", entry: { kind: "topic", language, topic: a.topic, package: a.package || null } };
  }
  const href = (a.href ?? "").trim();
  if (/^https?:\/\//i.test(href)) return { kind: "external", href };
  if (href.startsWith("#") && href.length > 1) return { kind: "anchor", id: decodeURIComponent(href.slice(1)) };
  if (/^mailto:/i.test(href)) return { kind: "default" };
  return { kind: "ignore" };
}

export function entryLabel(e: HelpEntry): string {
  if (e.kind === "search") return `search: ${e.query}`;
  return e.package ? `${e.package}::${e.topic}` : e.topic;
}
