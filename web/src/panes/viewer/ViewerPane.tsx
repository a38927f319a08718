// The Viewer pane: a workspace file shown inline (HTML sandboxed in an opaque origin,
// images, PDFs, text), reloaded when a render writes it again.
import { useState } from "preact/hooks";
import type { PaneContext, AnyEvent } from "../../contract";
import { encodeFilePath, wsPath } from "../common/api";
import { useEvents } from "../common/useEvents";
import { PublishButton } from "../publish/PublishDialog";
import { fileKind, normalizePath, samePath } from "./fileKind";

export function ViewerPane({ ctx, path }: { ctx: PaneContext; path: string | null | undefined }) {
  const [reloads, setReloads] = useState(0);

  useEvents(ctx.events, (ev: AnyEvent) => {
    if (ev.type === "document" && samePath(ev.output, path)) setReloads((n) => n + 1);
  });

  if (!path) {
    return (
      <section class="rp-pane rp-viewer" data-testid="viewer-pane" aria-label="Viewer">
        <div class="rp-empty">Rendered documents and files opened for viewing appear here.</div>
      </section>
    );
  }

  const clean = normalizePath(path);
  const kind = fileKind(clean);
  const raw = ctx.api.url(`${wsPath(ctx, "raw")}/${encodeFilePath(clean)}`, reloads ? { _r: reloads } : undefined);
  const download = ctx.api.url(`${wsPath(ctx, "files")}/${encodeFilePath(clean)}`, { download: true });
  const name = clean.split("/").pop() ?? clean;

  let body;
  if (kind === "html" || kind === "text") {
    // no allow-same-origin: someone else's document must not reach the API with our cookie
    body = (
      <iframe
        key={`${clean}#${reloads}`}
        class="rp-viewer-frame"
        data-testid="viewer-frame"
        sandbox="allow-scripts allow-popups"
        src={raw}
        title={name}
      />
    );
  } else if (kind === "pdf") {
    // browsers do not show PDFs in sandboxed frames; the hub serves them with a CSP that
    // runs no scripts
    body = <iframe key={`${clean}#${reloads}`} class="rp-viewer-frame" data-testid="viewer-frame" src={raw} title={name} />;
  } else if (kind === "image") {
    body = (
      <div class="rp-viewer-image">
        <img key={`${clean}#${reloads}`} data-testid="viewer-frame" src={raw} alt={name} />
      </div>
    );
  } else {
    body = (
      <div class="rp-empty">
        This file cannot be shown here.{" "}
        <a href={download} download data-testid="viewer-download">
          Download {name}
        </a>
      </div>
    );
  }

  return (
    <section class="rp-pane rp-viewer" data-testid="viewer-pane" aria-label={`Viewer: ${clean}`}>
      <div class="rp-toolbar">
        <span class="rp-mono rp-ellipsis" title={clean}>
          {clean}
        </span>
        <span class="rp-spacer" />
        <button type="button" class="rp-btn" onClick={() => setReloads((n) => n + 1)} title="Reload">
          ⟳
        </button>
        {kind === "html" && <PublishButton ctx={ctx} kind="document" source={clean} />}
        <a class="rp-btn" href={download} download title="Download">
          ⤓
        </a>
        {kind !== "other" && (
          <a class="rp-btn" data-testid="viewer-popout" href={raw} target="_blank" rel="noopener noreferrer" title="Open in a new tab">
            pop out ↗
          </a>
        )}
      </div>
      <div class="rp-viewer-body">{body}</div>
    </section>
  );
}
