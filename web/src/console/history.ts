// The console's input history: up/down walk through earlier inputs; persisted per
// workspace (newest last, bounded). A draft typed before walking is restored at the end.
import { load, save } from "../core/storage";

const MAX = 500;

export class InputHistory {
  private entries: string[];
  /** entries.length = not walking (at the draft) */
  private pos: number;
  private draft = "";

  constructor(private readonly key: string | null) {
    this.entries = key ? load<string[]>(key, []) : [];
    this.pos = this.entries.length;
  }

  add(code: string): void {
    const text = code.trimEnd();
    if (text && this.entries[this.entries.length - 1] !== text) {
      this.entries.push(text);
      if (this.entries.length > MAX) this.entries.splice(0, this.entries.length - MAX);
      if (this.key) save(this.key, this.entries);
    }
    this.pos = this.entries.length;
    this.draft = "";
  }

  /** The older entry, or null at the oldest. ``current`` is what the input holds now. */
  older(current: string): string | null {
    if (this.pos === 0) return null;
    if (this.pos === this.entries.length) this.draft = current;
    this.pos -= 1;
    return this.entries[this.pos];
  }

  /** The newer entry (the draft after the newest), or null when not walking. */
  newer(): string | null {
    if (this.pos >= this.entries.length) return null;
    this.pos += 1;
    return this.pos === this.entries.length ? this.draft : this.entries[this.pos];
  }
}
