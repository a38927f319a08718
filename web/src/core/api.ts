// The REST client of the shell (contract.ts Api): same-origin fetch with the login cookie,
// the CSRF double-submit header on writes, JSON in and out, ApiError on non-2xx answers.
import { ApiError, type Api, type Query } from "../contract";

const CSRF_COOKIE = "rsparkhub_csrf";

export function csrfToken(cookie: string = document.cookie): string {
  for (const part of cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === CSRF_COOKIE) return decodeURIComponent(v.join("="));
  }
  return "";
}

export function buildUrl(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== null && v !== undefined) params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}${path.includes("?") ? "&" : "?"}${qs}` : path;
}

/** A workspace file path encoded segment by segment ("a b/c.R" → "a%20b/c.R"). */
export function encodePath(path: string): string {
  return path
    .split("/")
    .filter((s) => s !== "")
    .map(encodeURIComponent)
    .join("/");
}

async function errorOf(r: Response): Promise<ApiError> {
  let code = `http_${r.status}`;
  let message = r.statusText || `Request failed (${r.status}).`;
  try {
    const body = (await r.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(r.status, code, message);
}

/** Called when an answer says the login is gone (401), so the app can show the login page. */
export type UnauthorizedHandler = () => void;

export function createApi(onUnauthorized?: UnauthorizedHandler): Api {
  async function send(method: string, path: string, body?: unknown, query?: Query): Promise<Response> {
    const headers: Record<string, string> = {};
    let payload: BodyInit | undefined;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    let r: Response;
    try {
      r = await fetch(buildUrl(path, query), { method, headers, body: payload, credentials: "same-origin" });
    } catch (e) {
      throw new ApiError(0, "network", `The hub cannot be reached (${e instanceof Error ? e.message : e}).`);
    }
    if (!r.ok) {
      const err = await errorOf(r);
      if (r.status === 401 && path !== "/api/login") onUnauthorized?.();
      throw err;
    }
    return r;
  }
  async function json<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    const r = await send(method, path, body, query);
    if (r.status === 204) return undefined as T;
    const type = r.headers.get("content-type") ?? "";
    return (type.includes("json") ? await r.json() : await r.text()) as T;
  }
  return {
    get: (path, query) => json("GET", path, undefined, query),
    post: (path, body, query) => json("POST", path, body, query),
    put: (path, body, query) => json("PUT", path, body, query),
    patch: (path, body, query) => json("PATCH", path, body, query),
    del: (path, query) => json("DELETE", path, undefined, query),
    blob: async (path, query) => (await send("GET", path, undefined, query)).blob(),
    url: (path, query) => new URL(buildUrl(path, query), location.origin).toString(),
  };
}
