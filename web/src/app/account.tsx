// The caller's password: the forced "choose your password" page (a user who logged in
// through a one-time link has none yet) and the Account dialog that changes it. The hub
// checks the rules (hub/passwords.py) and its message is shown as it is.
import { useState } from "preact/hooks";
import type { Api } from "../contract";
import { Dialog } from "./Dialog";
import type { Me } from "./model";
import { errorMessage, notify } from "./notify";
import { TID } from "./testids";
import { ThemeToggle } from "./theme";

const RULES =
  "At least 8 characters; not one of the 20,000 most common passwords, not your user name, " +
  "nothing as simple as 'abcdefgh'. A phrase of a few unrelated words is easy to remember.";

interface FormProps {
  api: Api;
  /** ask for the current password (a change, not a first choice) */
  needsCurrent: boolean;
  submitLabel: string;
  onDone(): void;
  onCancel?(): void;
}

function PasswordForm({ api, needsCurrent, submitLabel, onDone, onCancel }: FormProps) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const next = String(form.get("new") ?? "");
    if (next !== String(form.get("repeat") ?? "")) {
      setError("The two new passwords differ: type the same password twice.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      const body: { new_password: string; old_password?: string } = { new_password: next };
      if (needsCurrent) body.old_password = String(form.get("current") ?? "");
      await api.post("/api/me/password", body);
      onDone();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="dialog-form password-form" onSubmit={submit}>
      {needsCurrent && (
        <label>
          Current password
          <input name="current" type="password" data-testid={TID.passwordCurrent} autocomplete="current-password" required />
        </label>
      )}
      <label>
        New password
        <input
          name="new"
          type="password"
          data-testid={TID.passwordNew}
          autocomplete="new-password"
          required
          autoFocus={!needsCurrent}
          aria-describedby="password-rules"
        />
      </label>
      <label>
        New password again
        <input name="repeat" type="password" data-testid={TID.passwordRepeat} autocomplete="new-password" required />
      </label>
      <p id="password-rules" class="small muted">
        {RULES}
      </p>
      <p class="error-text" role="alert" data-testid={TID.passwordError}>
        {error}
      </p>
      <div class="dialog-buttons">
        {onCancel && (
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        )}
        <button type="submit" class="primary" data-testid={TID.passwordSubmit} disabled={busy}>
          {submitLabel}
        </button>
      </div>
    </form>
  );
}

/** Shown instead of every page while the user has no password. */
export function ChoosePasswordPage({ api, me, onDone, onLogout }: { api: Api; me: Me; onDone(me: Me): void; onLogout(): void }) {
  return (
    <main class="login-page" data-testid={TID.choosePassword}>
      <div class="login-theme">
        <ThemeToggle />
      </div>
      <div class="login-card">
        <h1>Welcome, {me.name}</h1>
        <p class="small">
          Choose your password. You will log in with the user name <strong>{me.name}</strong> and this password from now on;
          the link you came with works only once.
        </p>
        <PasswordForm
          api={api}
          needsCurrent={false}
          submitLabel="Save my password"
          onDone={() => {
            notify("Your password is set.");
            onDone({ ...me, has_password: true });
          }}
        />
        <button type="button" class="link-button small" onClick={onLogout}>
          Log out
        </button>
      </div>
    </main>
  );
}

/** The top bar's Account dialog: change the password. */
export function AccountDialog({ api, me, onClose }: { api: Api; me: Me; onClose(): void }) {
  return (
    <Dialog title={`Account: ${me.name}`} onClose={onClose} testid={TID.accountDialog}>
      <p class="small muted">
        Changing your password logs out your other browsers; API tokens keep working.
      </p>
      <PasswordForm
        api={api}
        needsCurrent={true}
        submitLabel="Change password"
        onCancel={onClose}
        onDone={() => {
          notify("Your password is changed.");
          onClose();
        }}
      />
    </Dialog>
  );
}
