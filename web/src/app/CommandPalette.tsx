// The command palette and shortcut sheet (F1, Ctrl+Shift+P): every command of the IDE
// with its keys; type to filter, ↑/↓ to choose, Enter or a click to run it.
import { useState } from "preact/hooks";
import { filterCommands, type Command } from "./commands";
import { Dialog } from "./Dialog";
import { TID } from "./testids";

interface Props {
  commands: Command[];
  onClose(): void;
}

export function CommandPalette({ commands, onClose }: Props) {
  const [query, setQuery] = useState("");
  const [index, setIndex] = useState(0);
  const shown = filterCommands(commands, query);
  const at = Math.min(index, Math.max(0, shown.length - 1));

  const run = (c: Command | undefined) => {
    if (!c || c.disabled) return;
    onClose();
    // after the dialog has closed and given the focus back (a command may move it)
    setTimeout(() => c.run(), 0);
  };

  const onKeyDown = (e: KeyboardEvent) => {
    const step = { ArrowDown: 1, ArrowUp: -1 }[e.key];
    if (step !== undefined) {
      e.preventDefault();
      const n = shown.length;
      if (n) {
        const next = (at + step + n) % n;
        setIndex(next);
        document.getElementById(`command-${shown[next].id}`)?.scrollIntoView({ block: "nearest" });
      }
    } else if (e.key === "Enter") {
      e.preventDefault();
      run(shown[at]);
    }
  };

  return (
    <Dialog title="Commands and shortcuts" onClose={onClose} testid={TID.commandPalette}>
      <input
        class="palette-filter"
        data-testid={TID.commandFilter}
        type="search"
        placeholder="Type to find a command"
        aria-label="Find a command"
        aria-controls="palette-list"
        aria-activedescendant={shown[at] ? `command-${shown[at].id}` : undefined}
        value={query}
        autoFocus
        onInput={(e) => {
          setQuery(e.currentTarget.value);
          setIndex(0);
        }}
        onKeyDown={onKeyDown}
      />
      <ul class="palette-list" id="palette-list" role="listbox" aria-label="Commands">
        {shown.map((c, i) => (
          <li
            key={c.id}
            id={`command-${c.id}`}
            role="option"
            aria-selected={i === at}
            aria-disabled={c.disabled ? true : undefined}
            class={`palette-item${i === at ? " active" : ""}${c.disabled ? " disabled" : ""}`}
            data-testid={TID.commandItem}
            data-command={c.id}
            title={c.disabled}
            onMouseMove={() => setIndex(i)}
            onClick={() => run(c)}
          >
            <span class="palette-label">{c.label}</span>
            <span class="palette-group muted">{c.group}</span>
            {c.shortcut && (
              <span class="palette-keys">
                {c.shortcut.split(" / ").map((k) => (
                  <kbd key={k}>{k}</kbd>
                ))}
              </span>
            )}
          </li>
        ))}
        {!shown.length && <li class="muted palette-none">No command matches “{query}”.</li>}
      </ul>
      <div class="dialog-buttons">
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
