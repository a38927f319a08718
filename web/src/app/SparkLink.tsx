// "Spark UI" in the workspace's top bar: a link (new tab) to the Spark web UI the caller
// may open right now (GET /api/spark ui_url: the shared server's for administrators, the
// user's own driver's on Kubernetes). Nothing when Spark is off or there is no such UI.
import { useEffect, useState } from "preact/hooks";
import type { Api, SparkInfo } from "../contract";
import { sparkUiHref } from "./profiles";
import { TID } from "./testids";

interface Props {
  api: Api;
  /** the session's state: asked again when it changes (the UI comes and goes with it) */
  sessionState: string;
}

export function SparkLink({ api, sessionState }: Props) {
  const [info, setInfo] = useState<SparkInfo | null>(null);
  const off = info?.mode === "off";
  useEffect(() => {
    if (off) return; // a hub setting: it does not change while the page is open
    let live = true;
    api.get<SparkInfo>("/api/spark").then(
      (i) => live && setInfo(i && typeof i === "object" ? i : null),
      () => live && setInfo(null),
    );
    return () => {
      live = false;
    };
  }, [api, sessionState, off]);

  const href = sparkUiHref(info);
  if (!info || !href) return null;
  return (
    <a
      class="spark-ui-link"
      data-testid={TID.sparkUiLink}
      href={href}
      target="_blank"
      rel="noopener noreferrer"
      title={info.detail}
      aria-label="Spark UI (opens in a new tab)"
    >
      Spark UI <span aria-hidden="true">↗</span>
    </a>
  );
}
