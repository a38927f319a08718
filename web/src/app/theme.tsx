// Light/dark theme: the system's preference until the user picks one with the toggle
// (persisted). The choice is the data-theme attribute of <html>; theme.css does the rest.
import { useState } from "preact/hooks";
import { load, save } from "../core/storage";
import { TID } from "./testids";

export type Theme = "light" | "dark";

const KEY = "theme";
const systemDark = (): boolean => window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;

export function initTheme(): void {
  const chosen = load<Theme | null>(KEY, null);
  if (chosen) document.documentElement.dataset.theme = chosen;
}

export function currentTheme(): Theme {
  const set = document.documentElement.dataset.theme;
  if (set === "light" || set === "dark") return set;
  return systemDark() ? "dark" : "light";
}

export function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>(currentTheme);
  const next: Theme = theme === "dark" ? "light" : "dark";
  const toggle = () => {
    document.documentElement.dataset.theme = next;
    save(KEY, next);
    setTheme(next);
  };
  return (
    <button
      type="button"
      class="icon"
      data-testid={TID.themeToggle}
      aria-label={`Switch to the ${next} theme`}
      title={`Switch to the ${next} theme`}
      onClick={toggle}
    >
      {theme === "dark" ? "☀" : "☾"}
    </button>
  );
}
