// The app shell: who is logged in, the hash route, and the page for it.
import { useEffect, useMemo, useState } from "preact/hooks";
import type { Api } from "../contract";
import { createApi } from "../core/api";
import { ChoosePasswordPage } from "./account";
import { AdminPage } from "./AdminPage";
import { HomePage } from "./HomePage";
import { LoginPage } from "./LoginPage";
import type { Me } from "./model";
import { Toasts } from "./notify";
import { useRoute } from "./route";
import { SharedPage } from "./SharedPage";
import { WorkspacePage } from "./WorkspacePage";

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const api: Api = useMemo(() => createApi(() => setMe(null)), []);
  const route = useRoute();

  useEffect(() => {
    api.get<Me>("/api/me").then(setMe, () => setMe(null));
  }, [api]);

  const logout = async () => {
    try {
      await api.post("/api/logout");
    } finally {
      setMe(null);
      location.hash = "#/";
    }
  };

  let page;
  if (me === undefined) page = <p class="loading">Loading…</p>;
  else if (me === null) page = <LoginPage api={api} onLogin={setMe} />;
  // Logged in through a one-time link: a password first, then everything else.
  else if (me.has_password === false) page = <ChoosePasswordPage api={api} me={me} onDone={setMe} onLogout={logout} />;
  else if (route.page === "workspace") page = <WorkspacePage key={route.id} api={api} me={me} workspaceId={route.id} />;
  else if (route.page === "admin" && me.is_admin) page = <AdminPage api={api} me={me} onLogout={logout} />;
  else if (route.page === "shared") page = <SharedPage api={api} me={me} onLogout={logout} />;
  else page = <HomePage api={api} me={me} onLogout={logout} />;

  return (
    <>
      {page}
      <Toasts />
    </>
  );
}
