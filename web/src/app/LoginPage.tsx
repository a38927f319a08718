import { useState } from "preact/hooks";
import type { Api } from "../contract";
import { errorMessage } from "./notify";
import type { Me } from "./model";
import { TID } from "./testids";
import { ThemeToggle } from "./theme";

interface Props {
  api: Api;
  onLogin(me: Me): void;
}

// The hub sends a browser here (#/link-invalid) when a one-time login link was already
// used, has expired or was replaced by a newer one.
const LINK_INVALID =
  "This login link was already used, has expired or was replaced by a newer one. Log in with your " +
  "password, or ask an administrator for a new link (Admin → Users → New login link).";

export function LoginPage({ api, onLogin }: Props) {
  const [error, setError] = useState("");
  const linkInvalid = location.hash === "#/link-invalid";
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    setBusy(true);
    setError("");
    try {
      const r = await api.post<{ user: Me }>("/api/login", {
        name: String(form.get("name") ?? ""),
        password: String(form.get("password") ?? ""),
      });
      if (linkInvalid) location.hash = "#/";
      onLogin(r.user);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login-page">
      <div class="login-theme">
        <ThemeToggle />
      </div>
      <form class="login-card" onSubmit={submit} aria-labelledby="login-title">
        <h1 id="login-title">rsparkhub</h1>
        {linkInvalid && (
          <p class="notice" data-testid={TID.linkInvalid}>
            {LINK_INVALID}
          </p>
        )}
        <label>
          User name
          <input name="name" data-testid={TID.loginName} autocomplete="username" required autoFocus />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            data-testid={TID.loginPassword}
            autocomplete="current-password"
            required
          />
        </label>
        <p class="error-text" role="alert">
          {error}
        </p>
        <button type="submit" class="primary" data-testid={TID.loginSubmit} disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
