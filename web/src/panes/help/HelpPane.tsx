// The Help pane: help search and help pages (HTML sanitized by the hub), with links between
// pages followed inside the pane and a back/forward history; a topic found in several
// packages shows the list to choose from; find in page (Ctrl+F in the pane) marks every
// match and steps through them.
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
import { clearFind, findAll, setCurrent } from "./findInPage";
import "./help.css";

interface HelpPage {
  kind?: "page";
  language?: string;
  topic: string;
  package: string | null;
  title: string | null;
  html: string;
}

/** A topic that names pages in several packages (R 4.2's plot: base and graphics). */
interface HelpChoice {
  topic: string;
  package: string;
  page?: string;
  title: string;
}

type HelpAnswer = HelpPage | { kind: "choices"; topic: string; matches: HelpChoice[] };

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
  | { state: "choices"; entry: HelpEntry; topic: string; matches: HelpChoice[] }
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
  const findRef = useRef<HTMLInputElement>(null);
  const hits = useRef<HTMLElement[]>([]);
  const [findText, setFindText] = useState("");
  const [found, setFound] = useState({ count: 0, current: -1 });
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
        ctx.api.get<HelpAnswer>(wsPath(ctx, "help"), { language: entry.language, topic: entry.topic, package: entry.package ?? undefined }),
      ).then(
        (a) =>
          done(
            a.kind === "choices"
              ? { state: "choices", entry, topic: a.topic, matches: Array.isArray(a.matches) ? a.matches : [] }
              : { state: "page", entry, page: a },
          ),
        fail,
      );
    } else {
      withBusyRetry(() =>
        ctx.api.get<{ results: SearchResult[] }>(wsPath(ctx, "help", "search"), {
          q: entry.query,
          limit: 100,
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

  // find in page: marks every match of the find text in the page shown (again when it changes)
  const runFind = (text: string) => {
    const el = pageRef.current;
    if (!el) {
      hits.current = [];
      setFound({ count: 0, current: -1 });
      return;
    }
    hits.current = findAll(el, text);
    setFound({ count: hits.current.length, current: setCurrent(hits.current, 0) });
  };
  useEffect(() => runFind(findText), [view.state === "page" ? view.page : null]);
  const step = (by: number) => {
    if (hits.current.length === 0) return;
    setFound({ count: hits.current.length, current: setCurrent(hits.current, found.current + by) });
  };
  const closeFind = () => {
    setFindText("");
    if (pageRef.current) clearFind(pageRef.current);
    hits.current = [];
    setFound({ count: 0, current: -1 });
  };
  const onPaneKey = (e: KeyboardEvent) => {
    if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && e.key.toLowerCase() === "f" && view.state === "page") {
      e.preventDefault();
      findRef.current?.focus();
      findRef.current?.select();
    }
  };

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
    <section class="rp-pane rp-help" data-testid="help-pane" aria-label="Help" onKeyDown={onPaneKey}>
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
        {view.state === "choices" && (
          <div class="rp-help-choices" data-testid="help-choices">
            <p>
              Help on <span class="rp-mono">{view.topic}</span> was found in several packages:
            </p>
            <ul>
              {view.matches.map((m) => (
                <li key={`${m.package}:${m.page ?? m.topic}`}>
                  <button
                    type="button"
                    class="rp-help-result"
                    data-testid="help-choice"
                    data-package={m.package}
                    onClick={() => visit({ kind: "topic", language: "r", topic: m.topic, package: m.package })}
                  >
                    <span class="rp-mono">
                      {m.package}::{m.page || m.topic}
                    </span>
                    {m.title && <span class="rp-help-title"> — {m.title}</span>}
                  </button>
                </li>
              ))}
            </ul>
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
              <span class="rp-help-find" role="search" aria-label="Find in page">
                <input
                  ref={findRef}
                  type="search"
                  data-testid="help-find-input"
                  placeholder="Find in page"
                  aria-label="Find in page"
                  value={findText}
                  onInput={(e) => {
                    const t = (e.currentTarget as HTMLInputElement).value;
                    setFindText(t);
                    runFind(t);
                  }}
                  onKeyDown={(e) => {
                    if (e.key === "Enter") {
                      e.preventDefault();
                      step(e.shiftKey ? -1 : 1);
                    } else if (e.key === "Escape") closeFind();
                  }}
                />
                <span class="rp-muted rp-small" data-testid="help-find-count" aria-live="polite">
                  {findText ? (found.count ? `${found.current + 1} of ${found.count}` : "no matches") : ""}
                </span>
                <button type="button" class="rp-btn" data-testid="help-find-prev" disabled={found.count === 0} onClick={() => step(-1)} aria-label="Previous match" title="Previous match (Shift+Enter)">
                  ↑
                </button>
                <button type="button" class="rp-btn" data-testid="help-find-next" disabled={found.count === 0} onClick={() => step(1)} aria-label="Next match" title="Next match (Enter)">
                  ↓
                </button>
              </span>
            </div>
            <div
              ref={pageRef}
              class="rp-help-html"
              data-testid="help-page"
              // focusable, so that Ctrl+F reaches the pane after a click in the page
              tabIndex={0}
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
