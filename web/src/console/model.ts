// The console's output as a list of lines: text chunks of a stream are split into lines
// (a line may arrive in pieces; "\r" returns to the line's start as terminals do), blocks
// (results, errors, echoed input) and plots are whole lines. Only the last ``maxLines``
// lines are kept for display; older ones move to a bounded text archive so the transcript
// can still be downloaded.

export type LineKind = "stdout" | "stderr" | "error" | "result" | "echo" | "info" | "plot";

export interface PlotRef {
  /** the plot's id in the workspace's plot history */
  id: string;
  url: string;
  mime: string;
  width?: number | null;
  height?: number | null;
}

export interface Line {
  /** position in the whole transcript (0 = first line ever written) */
  readonly n: number;
  readonly kind: LineKind;
  text: string;
  plot?: PlotRef;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]/g;
const BREAK = /\r\n|\n|\r/g;
const ARCHIVE_CHUNK = 1 << 16;

export class ConsoleModel {
  /** bumped on every change (for renderers) */
  version = 0;
  /** lines no longer kept for display (the first kept line's number) */
  dropped = 0;
  /** archived lines that did not fit in the archive either */
  lost = 0;

  private store: Line[] = [];
  private start = 0;
  private next = 0;
  /** the last line is still being written (a stream chunk without its newline) */
  private open: { line: Line; col: number } | null = null;
  private archive: string[] = [];
  private archiveChars = 0;

  constructor(
    readonly maxLines = 50_000,
    readonly maxArchiveChars = 16_000_000,
  ) {}

  get length(): number {
    return this.store.length - this.start;
  }

  /** the i-th kept line (0 = the oldest kept) */
  line(i: number): Line {
    return this.store[this.start + i];
  }

  /** Text written to stdout or stderr, in pieces as it arrives. */
  write(kind: "stdout" | "stderr", text: string): void {
    const clean = text.replace(ANSI, "");
    let last = 0;
    for (const m of clean.matchAll(BREAK)) {
      this.put(kind, clean.slice(last, m.index));
      if (m[0] === "\r") {
        if (this.open?.line.kind === kind) this.open.col = 0;
      } else {
        if (this.open?.line.kind !== kind) this.push(kind, "");
        this.open = null;
      }
      last = (m.index ?? 0) + m[0].length;
    }
    this.put(kind, clean.slice(last));
    this.changed();
  }

  /** Whole lines (a result, an error, echoed input, a note). */
  block(kind: Exclude<LineKind, "plot">, text: string): void {
    this.open = null;
    const body = text.replace(ANSI, "").replace(/\r\n?/g, "\n").replace(/\n$/, "");
    for (const t of body.split("\n")) this.push(kind, t);
    this.open = null;
    this.changed();
  }

  plot(ref: PlotRef, alt: string): void {
    this.open = null;
    this.push("plot", alt).plot = ref;
    this.changed();
  }

  clear(): void {
    this.dropLines(this.length);
    this.changed();
  }

  /** Everything written, as text (lines that no longer fit are counted). */
  transcript(): string {
    const head = this.lost ? [`[${this.lost} earlier lines are no longer kept]\n`] : [];
    const kept: string[] = [];
    for (let i = 0; i < this.length; i++) kept.push(this.line(i).text + "\n");
    return [...head, ...this.archive, ...kept].join("");
  }

  private put(kind: "stdout" | "stderr", s: string): void {
    if (!s) return;
    const open = this.open;
    if (open && open.line.kind === kind) {
      const t = open.line.text;
      open.line.text = t.slice(0, open.col) + s + t.slice(open.col + s.length);
      open.col += s.length;
      return;
    }
    this.open = { line: this.push(kind, s), col: s.length };
  }

  private push(kind: LineKind, text: string): Line {
    const line: Line = { n: this.next++, kind, text };
    this.open = null;
    this.store.push(line);
    if (this.length > this.maxLines) this.dropLines(this.length - this.maxLines);
    return line;
  }

  private dropLines(count: number): void {
    const gone = this.store.slice(this.start, this.start + count);
    if (this.open && gone.includes(this.open.line)) this.open = null;
    this.start += count;
    this.dropped += count;
    const text = gone.map((l) => l.text + "\n").join("");
    const tail = this.archive.length - 1;
    if (tail >= 0 && this.archive[tail].length < ARCHIVE_CHUNK) this.archive[tail] += text;
    else this.archive.push(text);
    this.archiveChars += text.length;
    while (this.archiveChars > this.maxArchiveChars && this.archive.length > 0) {
      const old = this.archive.shift() as string;
      this.archiveChars -= old.length;
      this.lost += old.split("\n").length - 1;
    }
    if (this.start > 1024 && this.start * 2 > this.store.length) {
      this.store = this.store.slice(this.start);
      this.start = 0;
    }
  }

  private changed(): void {
    this.version++;
  }
}
