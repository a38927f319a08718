// Publish a rendered document (Viewer pane) or a plot (Plots pane): the button, and the
// dialog choosing the audience, copying the link, making a new link, unpublishing, and
// listing everything the workspace has published. Owners and editors publish; viewers see
// the list. The hub enforces it (hub/api/publications.py).
import { useEffect, useRef, useState } from "preact/hooks";
import type { PaneContext } from "../../contract";
import { errorInfo, wsPath } from "../common/api";
import { AUDIENCES, findPublication, splitUrl, versionLabel, type Audience, type Publication, type PublicationKind } from "./publications";

interface Target {
  kind: PublicationKind;
  source: string;
}

export function PublishButton({ ctx, kind, source }: { ctx: PaneContext } & Target) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button type="button" class="rp-btn" data-testid="publish-open" onClick={() => setOpen(true)} title="Publish at a stable URL">
        Publish…
      </button>
      {open && <PublishDialog ctx={ctx} kind={kind} source={source} onClose={() => setOpen(false)} />}
    </>
  );
}

export function PublishDialog({ ctx, kind, source, onClose }: { ctx: PaneContext; onClose(): void } & Target) {
  const ref = useRef<HTMLDialogElement>(null);
  const [list, setList] = useState<Publication[] | null>(null);
  const [audience, setAudience] = useState<Audience>("members");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const base = wsPath(ctx, "publications");

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open && typeof d.showModal === "function") d.showModal();
    return () => d?.close?.();
  }, []);

  const reload = async (): Promise<Publication[]> => {
    const l = await ctx.api.get<Publication[]>(base);
    setList(l);
    return l;
  };
  useEffect(() => {
    reload()
      .then((l) => {
        const mine = findPublication(l, kind, source);
        if (mine) setAudience(mine.audience);
      })
      .catch((e) => setError(errorInfo(e).message));
  }, [ctx.workspaceId, kind, source]);

  const act = async (what: () => Promise<unknown>, done: string) => {
    setError("");
    setBusy(true);
    try {
      await what();
      ctx.notify(done);
      await reload();
    } catch (e) {
      setError(errorInfo(e).message);
    } finally {
      setBusy(false);
    }
  };

  const current = list ? findPublication(list, kind, source) : undefined;
  const link = (p: Publication) => {
    if (!p.url) return "";
    const [path, query] = splitUrl(p.url);
    return ctx.api.url(path, query);
  };
  const copy = async (text: string) => {
    try {
      await navigator.clipboard.writeText(text);
      ctx.notify("Link copied.");
    } catch {
      const input = ref.current?.querySelector<HTMLInputElement>('[data-testid="publish-link"]');
      input?.select();
      ctx.notify("Press Ctrl+C to copy the selected link.");
    }
  };
  const name = kind === "plot" ? "this plot" : source;

  return (
    <dialog
      ref={ref}
      class="dialog wide"
      aria-label={`Publish ${name}`}
      data-testid="publish-dialog"
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <h2 class="dialog-title">Publish {name}</h2>
      {ctx.canWrite ? (
        <form
          class="dialog-form"
          onSubmit={(e) => {
            e.preventDefault();
            void act(() => ctx.api.post(base, { kind, source, audience }), current ? "Republished: same URL, new content." : "Published.");
          }}
        >
          <label>
            Who can see it
            <select data-testid="publish-audience" value={audience} onChange={(e) => setAudience(e.currentTarget.value as Audience)}>
              {AUDIENCES.map((a) => (
                <option key={a.value} value={a.value}>
                  {a.label}
                </option>
              ))}
            </select>
          </label>
          <div class="dialog-buttons">
            <button type="submit" class="rp-btn" data-testid="publish-submit" disabled={busy}>
              {current ? "Republish" : "Publish"}
            </button>
            {current && current.audience !== audience && (
              <button
                type="button"
                class="rp-btn"
                data-testid="publish-audience-only"
                disabled={busy}
                onClick={() => void act(() => ctx.api.patch(`${base}/${encodeURIComponent(current.id)}`, { audience }), "Audience changed; the old link no longer works.")}
              >
                Change audience only
              </button>
            )}
            <button type="button" class="rp-btn" data-testid="publish-close" onClick={onClose}>
              Close
            </button>
          </div>
        </form>
      ) : (
        <p class="muted">Viewers see what the workspace published; owners and editors publish.</p>
      )}
      {error && (
        <p class="error" role="alert" data-testid="publish-error">
          {error}
        </p>
      )}
      {current && (
        <div data-testid="publish-current" data-audience={current.audience}>
          <p>
            Published {current.published_at} by {current.published_by}, from {versionLabel(current)}.
          </p>
          <div class="dialog-buttons">
            <input class="rp-mono" readOnly data-testid="publish-link" value={link(current)} size={60} onFocus={(e) => e.currentTarget.select()} />
            <button type="button" class="rp-btn" data-testid="publish-copy" onClick={() => void copy(link(current))}>
              Copy link
            </button>
            {ctx.canWrite && current.audience === "link" && (
              <button
                type="button"
                class="rp-btn"
                data-testid="publish-new-link"
                disabled={busy}
                onClick={() =>
                  void act(() => ctx.api.patch(`${base}/${encodeURIComponent(current.id)}`, { audience: "link", new_link: true }), "New link made; the old one no longer works.")
                }
              >
                New link
              </button>
            )}
          </div>
        </div>
      )}
      <h3 class="dialog-subtitle">Published from this workspace</h3>
      {list === null && !error && <p class="muted">Loading…</p>}
      {list && list.length === 0 && <p class="muted">Nothing yet.</p>}
      {list && list.length > 0 && (
        <table class="table" data-testid="publications-list">
          <tbody>
            {list.map((p) => (
              <tr key={p.id} data-testid="publication-row" data-id={p.id} data-audience={p.audience}>
                <td>
                  {p.url ? (
                    <a href={link(p)} target="_blank" rel="noopener noreferrer">
                      {p.title}
                    </a>
                  ) : (
                    p.title
                  )}
                </td>
                <td>{AUDIENCES.find((a) => a.value === p.audience)?.label}</td>
                <td class="muted">
                  {p.published_at} · {p.published_by}
                </td>
                <td>
                  {ctx.canWrite && (
                    <button
                      type="button"
                      class="rp-btn"
                      data-testid="publication-unpublish"
                      disabled={busy}
                      onClick={() => void act(() => ctx.api.del(`${base}/${encodeURIComponent(p.id)}`), `Unpublished ${p.title}; its URL no longer works.`)}
                    >
                      Unpublish
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </dialog>
  );
}
