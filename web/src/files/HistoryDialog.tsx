// A file's versions, newest first: look at one, make it the newest again (restore).
import { useEffect, useState } from "preact/hooks";
import { Dialog } from "../app/Dialog";
import { errorMessage } from "../app/notify";
import type { Api } from "../contract";
import { encodePath } from "../core/api";
import { formatSize } from "../core/files";

interface Version {
  version: number;
  size: number;
  author: string | null;
  created_at: string;
}

interface Props {
  api: Api;
  workspaceId: string;
  path: string;
  canWrite: boolean;
  onRestored(version: number): void;
  onClose(): void;
}

export function HistoryDialog({ api, workspaceId, path, canWrite, onRestored, onClose }: Props) {
  const [versions, setVersions] = useState<Version[] | null>(null);
  const [preview, setPreview] = useState<{ version: number; text: string } | null>(null);
  const [error, setError] = useState("");
  const base = `/api/workspaces/${workspaceId}`;

  useEffect(() => {
    api.get<Version[]>(`${base}/history/${encodePath(path)}`).then(setVersions, (e) => setError(errorMessage(e)));
  }, [path]);

  const show = async (version: number) => {
    try {
      const f = await api.get<{ content: string }>(`${base}/text/${encodePath(path)}`, { version });
      setPreview({ version, text: f.content });
    } catch (e) {
      setPreview({ version, text: `(${errorMessage(e)})` });
    }
  };

  const restore = async (version: number) => {
    try {
      await api.post(`${base}/restore/${encodePath(path)}`, { version });
      onRestored(version);
    } catch (e) {
      setError(errorMessage(e));
    }
  };

  return (
    <Dialog title={`History of ${path}`} onClose={onClose} wide>
      {error && (
        <p class="error-text" role="alert">
          {error}
        </p>
      )}
      <div class="history">
        <table class="table history-list">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Saved</th>
              <th scope="col">By</th>
              <th scope="col">Size</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(versions ?? []).map((v, i) => (
              <tr key={v.version} class={preview?.version === v.version ? "selected" : ""}>
                <td>{v.version}</td>
                <td>{new Date(v.created_at).toLocaleString()}</td>
                <td>{v.author ?? ""}</td>
                <td>{formatSize(v.size)}</td>
                <td class="nowrap">
                  <button type="button" class="icon" onClick={() => show(v.version)}>
                    View
                  </button>
                  {i > 0 && canWrite && (
                    <button type="button" class="icon" onClick={() => restore(v.version)}>
                      Restore
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {preview && (
          <pre class="history-preview" aria-label={`Version ${preview.version}`}>
            {preview.text}
          </pre>
        )}
      </div>
      <div class="dialog-buttons">
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
