// The Help pane: help search and help pages (HTML sanitized by the hub), with links between
// pages followed inside the pane and a back/forward history.
import { useEffect, useRef, useState } from "preact/hooks";
import type { HelpRequest, PaneContext } from "../../contract";
import { errorInfo, withBusyRetry, wsPath } from "../common/api";
import { useDoneWaiter } from "../common/doneWaiter";
import {
  back,
  canBack,
  canForward,
  classifyLink,
  currentEntry,
  EMPTY_HISTORY,
  entryFromRequest,
  entryLabel,
  forward,
  type HelpEntry,
  type HelpHistory,
  type HelpLanguage,
  pushEntry,
} from "./helpHistory";

interface HelpPage {
  language?: string;
  topic: string;
  package: string | null;
  title: string | null;
  html: string;
}

interface SearchResult {
  language: HelpLanguage;
  topic: string;
  package: string | null;
  title: string | null;
  matched?: string[];
  score?: number;
}

type View =
  | { state: "idle" }
  | { state: "loading"; entry: HelpEntry }
  | { state: "page"; entry: HelpEntry; page: HelpPage }
  | { state: "results"; entry: HelpEntry; results: SearchResult[] }
  | { state: "error"; entry: HelpEntry; message: string; code: string };

const LANG_LABEL: Record<HelpLanguage, string> = { r: "R", python: "Python" };

export function HelpPane({ ctx, request }: { ctx: PaneContext; request?: HelpRequest | null }) {
  const [history, setHistory] = useState<HelpHistory>(EMPTY_HISTORY);
  const [view, setView] = useState<View>({ state: "idle" });
  const [query, setQuery] = useState("");
  const [langFilter, setLangFilter] = useState<HelpLanguage | "">("");
  const [retry, setRetry] = useState(0);
  const waiter = useDoneWaiter(ctx.events);
  const pageRef = useRef<HTMLDivElement>(null);
  const cache = useRef(new Map<string, View>());
  const entry = currentEntry(history);
  const helpLanguages = ctx.languages.filter((l): l is HelpLanguage => l === "r" || l === "python");

  const visit = (e: HelpEntry) => setHistory((h) => pushEntry(h, e));

  // the shell's request: a topic or a search asked for by code (?mean, help(len)) or a menu
  useEffect(() => {
    const e = request ? entryFromRequest(request) : null;
    if (e) visit(e);
  }, [request]);

  useEffect(() => {
    if (!entry) return;
    if (entry.kind === "search") setQuery(entry.query);
    let live = true;
    const cacheKey = JSON.stringify(entry);
    const hit = cache.current.get(cacheKey);
    if (hit) {
      setView(hit);
      return;
    }
    const done = (v: View) => {
      if (!live) return;
      cache.current.set(cacheKey, v);
      if (cache.current.size > 30) cache.current.delete(cache.current.keys().next().value as string);
      setView(v);
    };
    setView({ state: "loading", entry });
    const mark = waiter.mark();
    const fail = (err: unknown) => {
      if (!live) return;
      const info = errorInfo(err);
      let message = info.message;
      if (info.code === "help_not_found") message = `No help found for “${entryLabel(entry)}”.`;
      else if (info.code === "kernel_busy") {
        message = "busy — the help appears when the running code finishes";
        waiter.after(mark, () => live && setRetry((n) => n + 1));
      } else if (info.code === "session_not_running") message = "no session — help comes from the running session";
      setView({ state: "error", entry, message, code: info.code });
    };
    if (entry.kind === "topic") {
      withBusyRetry(() =>
        ctx.api.get<HelpPage>(wsPath(ctx, "help"), { language: entry.language, topic: entry.topic, package: entry.package ?? undefined }),
      ).then((page) => done({ state: "page", entry, page }), fail);
    } else {
      withBusyRetry(() =>
        ctx.api.get<{ results: SearchResult[] }>(wsPath(ctx, "help", "search"), {
          q: entry.query,
          limit: 50,
          language: entry.language ?? undefined,
        }),
      ).then((r) => done({ state: "results", entry, results: Array.isArray(r.results) ? r.results : [] }), fail);
    }
    return () => {
      live = false;
    };
  }, [entry, retry]);

  // external links of a page open in a new tab, without access to this window
  useEffect(() => {
    const el = pageRef.current;
    if (!el) return;
    for (const a of el.querySelectorAll("a[href]")) {
      if (/^https?:\/\//i.test(a.getAttribute("href") ?? "") && !a.hasAttribute("data-help-topic")) {
        a.setAttribute("target", "_blank");
        a.setAttribute("rel", "noopener noreferrer");
      }
    }
    el.scrollTop = 0;
  }, [view.state === "page" ? view.page : null]);

  const onPageClick = (e: MouseEvent) => {
    const a = (e.target as Element | null)?.closest?.("a");
    if (!a || !pageRef.current?.contains(a)) return;
    const target = classifyLink(
      {
        href: a.getAttribute("href"),
        topic: a.getAttribute("data-help-topic"),
        package: a.getAttribute("data-help-package"),
        language: a.getAttribute("data-help-language"),
      },
      entry?.kind === "topic" ? entry.language : "r",
    );
    if (target.kind === "default") return;
    e.preventDefault();
    if (target.kind === "help") visit(target.entry);
    else if (target.kind === "external") window.open(target.href, "_blank", "noopener,noreferrer");
    else if (target.kind === "anchor") {
      const dest = [...pageRef.current.querySelectorAll("[id], a[name]")].find(
        (x) => x.getAttribute("id") === target.id || x.getAttribute("name") === target.id,
      );
      dest?.scrollIntoView?.({ block: "start" });
    }
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const q = query.trim();
    if (q) visit({ kind: "search", query: q, language: langFilter || null });
  };

  return (
    <section class="rp-pane rp-help" data-testid="help-pane" aria-label="Help">
      <div class="rp-toolbar">
        <button
          type="button"
          class="rp-btn"
          data-testid="help-back"
          disabled={!canBack(history)}
          onClick={() => setHistory(back)}
          aria-label="Back"
          title="Back"
        >
          ←
        </button>
        <button
          type="button"
          class="rp-btn"
          data-testid="help-forward"
          disabled={!canForward(history)}
          onClick={() => setHistory(forward)}
          aria-label="Forward"
          title="Forward"
        >
          →
        </button>
        <form class="rp-help-search" role="search" onSubmit={submit}>
          <input
            type="search"
            data-testid="help-search-input"
            placeholder="Search help…"
            aria-label="Search help"
            value={query}
            onInput={(e) => setQuery((e.currentTarget as HTMLInputElement).value)}
          />
          {helpLanguages.length > 1 && (
            <select
              aria-label="Language"
              value={langFilter}
              onChange={(e) => setLangFilter((e.currentTarget as HTMLSelectElement).value as HelpLanguage | "")}
            >
              <option value="">all</option>
              {helpLanguages.map((l) => (
                <option key={l} value={l}>
                  {LANG_LABEL[l]}
                </option>
              ))}
            </select>
          )}
        </form>
      </div>
      <div class="rp-scroll rp-help-body">
        {view.state === "idle" && <div class="rp-empty">Search for a topic, or run ?topic / help(name) in the console.</div>}
        {view.state === "loading" && <div class="rp-empty">loading {entryLabel(view.entry)}…</div>}
        {view.state === "error" && (
          <div class={`rp-status ${view.code === "help_not_found" || view.code === "kernel_busy" ? "" : "rp-error"}`} role="status" data-testid="help-error">
            {view.message}
            {view.code === "help_not_found" && view.entry.kind === "topic" && (
              <>
                {" "}
                <button type="button" class="rp-link" onClick={() => visit({ kind: "search", query: (view.entry as { topic: string }).topic, language: null })}>
                  Search for it
                </button>
              </>
            )}
          </div>
        )}
        {view.state === "results" && (
          <SearchResults results={view.results} query={(view.entry as { query: string }).query} onOpen={visit} />
        )}
        {view.state === "page" && (
          <article class="rp-help-page" aria-label={view.page.title ?? view.page.topic}>
            <div class="rp-help-head">
              <span class="rp-badge">{LANG_LABEL[(view.entry as { language: HelpLanguage }).language] ?? ""}</span>
              <span class="rp-mono rp-muted">{view.page.package ? `${view.page.package}::${view.page.topic}` : view.page.topic}</span>
            </div>
            <div
              ref={pageRef}
              class="rp-help-html"
              data-testid="help-page"
              onClick={onPageClick}
              // sanitized by the hub (nh3 allow-list): no scripts, styles, handlers, frames
              dangerouslySetInnerHTML={{ __html: view.page.html }}
            />
          </article>
        )}
      </div>
    </section>
  );
}

function SearchResults({ results, query, onOpen }: { results: SearchResult[]; query: string; onOpen: (e: HelpEntry) => void }) {
  if (results.length === 0) return <div class="rp-empty">Nothing found for “{query}”.</div>;
  return (
    <ol class="rp-help-results" aria-label={`Help search results for ${query}`}>
      {results.map((r, i) => (
        <li key={`${r.language}:${r.package}:${r.topic}:${i}`}>
          <button
            type="button"
            class="rp-help-result"
            data-testid="help-search-result"
            onClick={() => onOpen({ kind: "topic", language: r.language, topic: r.topic, package: r.package || null })}
          >
            <span class="rp-badge">{LANG_LABEL[r.language] ?? r.language}</span>
            <span class="rp-mono">{r.topic}</span>
            {r.package && <span class="rp-muted"> {r.package}</span>}
            {r.title && <span class="rp-help-title"> — {r.title}</span>}
            {r.matched && r.matched.length > 0 && <span class="rp-muted rp-small"> (matched: {r.matched.join(", ")})</span>}
          </button>
        </li>
      ))}
    </ol>
  );
}
