// The Packages pane: what the session has for R and Python — name, version and where it
// comes from: `base` (the machine's), `environment` (the workspace's declared environment,
// built from requirements.txt / DESCRIPTION) or `overlay` (installed in this workspace's
// sessions with pip / install.packages). An overlay package can be added to the declaration
// ("Add to requirements.txt" / "Add to DESCRIPTION"), so the declaration stays the truth;
// the next session builds it into the environment. The list reloads after each execution.
// "Restart to rebuild" restarts the session, which builds the declaration as it is now
// (or takes it from the cache) — the kernels' state is lost, so it asks first.
import { useEffect, useRef, useState } from "preact/hooks";
import type { AnyEvent, PaneContext } from "../../contract";
import { encodeFilePath, errorInfo, wsPath } from "../common/api";
import { useEvents } from "../common/useEvents";
import { addImport, addRequirement } from "./declare";
import "./packages.css";

type Source = "base" | "environment" | "overlay";
interface Pkg {
  name: string;
  version: string;
  source: Source;
}
type Lang = "python" | "r";
interface Built {
  declaration: string | null;
  key: string | null;
}
type Listing = Partial<Record<Lang, Pkg[]>> & { environments?: Partial<Record<Lang, Built>> };

const RELOAD_DELAY_MS = 600;
const DECLARATION: Record<Lang, string> = { python: "requirements.txt", r: "DESCRIPTION" };
const SOURCES: Source[] = ["overlay", "environment", "base"];

export function PackagesPane({ ctx }: { ctx: PaneContext }) {
  const [listing, setListing] = useState<Listing | null>(null);
  const [lang, setLang] = useState<Lang>(ctx.consoleLanguage === "r" ? "r" : "python");
  const [filter, setFilter] = useState("");
  const [source, setSource] = useState<"" | Source>("");
  const [error, setError] = useState("");
  const [reloads, setReloads] = useState(0);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  useEffect(() => {
    if (ctx.sessionState !== "running") return;
    let live = true;
    ctx.api.get<Listing>(wsPath(ctx, "packages")).then(
      (r) => {
        if (!live) return;
        setListing(r);
        setError("");
      },
      (e) => live && setError(errorInfo(e).message),
    );
    return () => {
      live = false;
    };
  }, [ctx.workspaceId, ctx.sessionState, reloads]);

  useEffect(() => () => (timer.current ? clearTimeout(timer.current) : undefined), []);
  // an install (pip, install.packages) is an execution: look again when one ends
  useEvents(ctx.events, (ev: AnyEvent) => {
    if (ev.type !== "done") return;
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => setReloads((n) => n + 1), RELOAD_DELAY_MS);
  });

  const declare = async (pkg: Pkg) => {
    const path = DECLARATION[lang];
    try {
      let text = "";
      let version = 0;
      try {
        const f = await ctx.api.get<{ content: string; version: number }>(
          `${wsPath(ctx, "text")}/${encodeFilePath(path)}`,
        );
        text = f.content;
        version = f.version;
      } catch (e) {
        if (errorInfo(e).status !== 404) throw e;
      }
      const next = lang === "python" ? addRequirement(text, pkg.name, pkg.version) : addImport(text, pkg.name);
      await ctx.api.put(`${wsPath(ctx, "text")}/${encodeFilePath(path)}`, {
        content: next,
        base_version: version,
      });
      ctx.notify(`${pkg.name} added to ${path}; the next session builds it into the environment.`);
    } catch (e) {
      ctx.notify(`Could not add ${pkg.name} to ${path}: ${errorInfo(e).message}`, "error");
    }
  };

  const rebuild = async () => {
    if (!window.confirm("Restart the session to build the workspace's declared environment as it is now? Variables in the session are lost.")) return;
    const path = wsPath(ctx, "session");
    try {
      await ctx.api.del(path);
      await ctx.api.post(path, { rebuild: true });
    } catch (e) {
      ctx.notify(`The session could not restart: ${errorInfo(e).message}`, "error");
    }
  };

  const built = listing?.environments?.[lang];
  const rows = (listing?.[lang] ?? []).filter(
    (p) => (!source || p.source === source) && p.name.toLowerCase().includes(filter.toLowerCase()),
  );
  const counts = Object.fromEntries(
    SOURCES.map((s) => [s, (listing?.[lang] ?? []).filter((p) => p.source === s).length]),
  );

  return (
    <section class="rp-pane rp-packages" data-testid="packages-pane" aria-label="Packages">
      <div class="rp-toolbar">
        <select
          data-testid="packages-language"
          aria-label="Language"
          value={lang}
          onChange={(e) => setLang((e.target as HTMLSelectElement).value as Lang)}
        >
          <option value="python">Python</option>
          <option value="r">R</option>
        </select>
        <select
          data-testid="packages-source"
          aria-label="Source"
          value={source}
          onChange={(e) => setSource((e.target as HTMLSelectElement).value as "" | Source)}
        >
          <option value="">All sources</option>
          {SOURCES.map((s) => (
            <option key={s} value={s}>
              {s} ({counts[s]})
            </option>
          ))}
        </select>
        <input
          type="search"
          data-testid="packages-filter"
          placeholder="Filter"
          aria-label="Filter packages"
          value={filter}
          onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
        />
        <button type="button" data-testid="packages-reload" onClick={() => setReloads((n) => n + 1)}>
          Reload
        </button>
      </div>
      {listing !== null && (
        <p class="rp-packages-env" data-testid="packages-environment">
          {built
            ? `${lang === "r" ? "R" : "Python"} environment: ${built.declaration ?? "?"} · ${(built.key ?? "").slice(0, 12)}`
            : `No declared ${lang === "r" ? "R" : "Python"} environment (${DECLARATION[lang]} declares one).`}{" "}
          {ctx.canWrite && (
            <button type="button" data-testid="packages-rebuild" onClick={() => void rebuild()}>
              Restart to rebuild
            </button>
          )}
        </p>
      )}
      {error && (
        <p class="rp-error" data-testid="packages-error" role="alert">
          {error}
        </p>
      )}
      {listing === null && !error && <p class="rp-empty">The session lists its packages once it runs.</p>}
      <table class="rp-packages-table">
        <thead>
          <tr>
            <th>Package</th>
            <th>Version</th>
            <th>Source</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {rows.map((p) => (
            <tr key={p.name} data-testid="packages-row" data-name={p.name} data-source={p.source}>
              <td>{p.name}</td>
              <td>{p.version}</td>
              <td>
                <span class={`rp-source rp-source-${p.source}`}>{p.source}</span>
              </td>
              <td>
                {p.source === "overlay" && ctx.canWrite && (
                  <button
                    type="button"
                    data-testid="packages-add"
                    title="Declare it, so every later session has it from the workspace's environment"
                    onClick={() => void declare(p)}
                  >
                    Add to {DECLARATION[lang]}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
