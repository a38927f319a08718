// Hash routes: #/ (home), #/admin, #/shared (publications you can see), #/ws/<workspace id>.
import { useEffect, useState } from "preact/hooks";

export type Route = { page: "home" } | { page: "admin" } | { page: "shared" } | { page: "workspace"; id: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#\/?/, "");
  const ws = /^ws\/([^/?#]+)/.exec(path);
  if (ws) return { page: "workspace", id: decodeURIComponent(ws[1]) };
  if (path === "admin") return { page: "admin" };
  if (path === "shared") return { page: "shared" };
  return { page: "home" };
}

export const hrefFor = (r: Route): string =>
  r.page === "workspace" ? `#/ws/${encodeURIComponent(r.id)}` : r.page === "home" ? "#/" : `#/${r.page}`;

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
