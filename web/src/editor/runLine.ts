// What Ctrl/Cmd+Enter runs: the selection, or the statement on the cursor's line — the
// line, extended over the following lines while a bracket or string is still open (or,
// in R, while the line ends with an operator such as `+`, `%>%`, `|>` or `,`) — and where
// the cursor goes next: the start of the next non-blank line.
import type { Text } from "@codemirror/state";

export interface RunTarget {
  code: string;
  from: number;
  to: number;
  /** where to put the cursor afterwards (null: leave the selection alone) */
  next: number | null;
}

interface ScanState {
  depth: number;
  quote: string | null;
}

const OPEN = "([{";
const CLOSE = ")]}";
const R_CONTINUATION = /(\+|-|\*|\/|\^|%[^%]*%|\|>|\||&|,|<-|=|~)\s*$/;

/** Bracket depth and open string after ``line``; comments (#) are ignored. */
export function scanLine(line: string, state: ScanState, language: string): ScanState {
  let { depth, quote } = state;
  const multiLineStrings = language === "r" || language === "bash";
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\") i++;
      else if (line.startsWith(quote, i)) {
        i += quote.length - 1;
        quote = null;
      }
      continue;
    }
    if (c === "#") break;
    if (c === '"' || c === "'" || (c === "`" && language === "r")) {
      const triple = language === "python" && line.startsWith(c.repeat(3), i);
      quote = triple ? c.repeat(3) : c;
      if (triple) i += 2;
    } else if (OPEN.includes(c)) depth++;
    else if (CLOSE.includes(c)) depth = Math.max(0, depth - 1);
  }
  if (quote && quote.length === 1 && !multiLineStrings) quote = null;
  return { depth, quote };
}

function continues(line: string, state: ScanState, language: string): boolean {
  if (state.depth > 0 || state.quote) return true;
  const code = line.replace(/#.*$/, "");
  if (language === "r") return R_CONTINUATION.test(code);
  return /\\\s*$/.test(code);
}

function isBlank(doc: Text, lineNo: number): boolean {
  return doc.line(lineNo).text.trim() === "";
}

export function runTarget(doc: Text, from: number, to: number, language: string): RunTarget | null {
  if (from !== to) return { code: doc.sliceString(from, to), from, to, next: null };
  let first = doc.lineAt(from).number;
  while (first <= doc.lines && isBlank(doc, first)) first++;
  if (first > doc.lines) return null;
  let last = first;
  let state = scanLine(doc.line(first).text, { depth: 0, quote: null }, language);
  while (last < doc.lines && continues(doc.line(last).text, state, language)) {
    last++;
    state = scanLine(doc.line(last).text, state, language);
  }
  let next = last + 1;
  while (next <= doc.lines && isBlank(doc, next)) next++;
  const start = doc.line(first).from;
  const end = doc.line(last).to;
  return {
    code: doc.sliceString(start, end),
    from: start,
    to: end,
    next: next <= doc.lines ? doc.line(next).from : doc.length,
  };
}
