// The header of the home and admin pages.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import type { Api } from "../contract";
import { AccountDialog } from "./account";
import type { Me } from "./model";
import { TID } from "./testids";
import { ThemeToggle } from "./theme";

interface Props {
  api: Api;
  me: Me;
  onLogout(): void;
  children?: ComponentChildren;
}

export function TopBar({ api, me, onLogout, children }: Props) {
  const [account, setAccount] = useState(false);
  return (
    <header class="topbar">
      <a class="brand" href="#/">
        rsparkhub
      </a>
      <nav class="topbar-nav" aria-label="Main">
        <a href="#/">Workspaces</a>
        <a href="#/shared" data-testid={TID.sharedLink} title="Publications you can see: yours, your workspaces', and those for every user">
          Shared with me
        </a>
        {me.is_admin && <a href="#/admin">Admin</a>}
      </nav>
      <div class="topbar-fill">{children}</div>
      <span class="muted" aria-label="Logged in as">
        {me.name}
      </span>
      <button type="button" data-testid={TID.accountButton} onClick={() => setAccount(true)} title="Change your password">
        Account
      </button>
      <ThemeToggle />
      <button type="button" onClick={onLogout}>
        Log out
      </button>
      {account && <AccountDialog api={api} me={me} onClose={() => setAccount(false)} />}
    </header>
  );
}
