// The header of the home and admin pages.
import type { ComponentChildren } from "preact";
import type { Me } from "./model";
import { ThemeToggle } from "./theme";

interface Props {
  me: Me;
  onLogout(): void;
  children?: ComponentChildren;
}

export function TopBar({ me, onLogout, children }: Props) {
  return (
    <header class="topbar">
      <a class="brand" href="#/">
        rsparkhub
      </a>
      <nav class="topbar-nav" aria-label="Main">
        <a href="#/">Workspaces</a>
        {me.is_admin && <a href="#/admin">Admin</a>}
      </nav>
      <div class="topbar-fill">{children}</div>
      <span class="muted" aria-label="Logged in as">
        {me.name}
      </span>
      <ThemeToggle />
      <button type="button" onClick={onLogout}>
        Log out
      </button>
    </header>
  );
}
