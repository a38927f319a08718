// Hash routes: #/ (home), #/admin, #/ws/<workspace id>.
import { useEffect, useState } from "preact/hooks";

export type Route = { page: "home" } | { page: "admin" } | { page: "workspace"; id: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  const ws = /^ws\/([^/?#]+)/.exec(path);
  if (ws) return { page: "workspace", id: decodeURIComponent(ws[1]) };
  if (path === "admin") return { page: "admin" };
  return { page: "home" };
}

export const hrefFor = (r: Route): string =>
  r.page === "workspace" ? `#/ws/${encodeURIComponent(r.id)}` : r.page === "admin" ? "#/admin" : "#/";

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
