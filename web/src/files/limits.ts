// The hub's size limits (GET /api/workspaces/{id}/limits), checked before an upload is
// sent; the hub checks them again. Sizes are said in MB, as the hub says them.

export interface Limits {
  max_file_bytes: number;
  max_upload_bytes: number;
  max_workspace_bytes: number;
  used_bytes: number;
}

const MB = 1024 * 1024;

/** As the hub says sizes (quotas.mb): MB, or bytes below 0.1 MB. */
export function mb(n: number): string {
  const v = n / MB;
  if (v < 0.1) return `${n} bytes`;
  return v >= 10 || v === Math.trunc(v) ? `${v.toFixed(0)} MB` : `${v.toFixed(1)} MB`;
}

/** Why these files cannot be uploaded, or null. */
export function uploadProblem(files: { name: string; size: number }[], limits: Limits): string | null {
  const big = files.find((f) => f.size > limits.max_file_bytes);
  if (big) return `'${big.name}' is ${mb(big.size)}; files are limited to ${mb(limits.max_file_bytes)}.`;
  const total = files.reduce((n, f) => n + f.size, 0);
  if (total > limits.max_upload_bytes)
    return `These files are ${mb(total)} together; an upload is limited to ${mb(limits.max_upload_bytes)}.`;
  const room = limits.max_workspace_bytes - limits.used_bytes;
  if (total > room)
    return `These files (${mb(total)}) do not fit: the workspace has ${mb(Math.max(0, room))} left of ${mb(limits.max_workspace_bytes)}.`;
  return null;
}
