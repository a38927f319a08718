// The language of the code chunk around a line of an R Markdown / Quarto / Markdown
// (```{r} … ```) or Sweave (<<>>= … @) document: what Ctrl+Enter runs a line in.
import type { Text } from "@codemirror/state";
import type { Language } from "../contract";
import { chunkInfoLanguage } from "./languages";

const FENCE_OPEN = /^\s*(`{3,}|~{3,})\s*(\{?[A-Za-z][^`]*)$/;
const FENCE_CLOSE = /^\s*(`{3,}|~{3,})\s*$/;
const NAMES: Record<string, Language> = { r: "r", python: "python", py: "python", bash: "bash", sh: "bash", shell: "bash" };

/** null: the line is not inside a runnable chunk */
export function chunkLanguage(doc: Text, lineNo: number, sweave = false): Language | null {
  for (let n = lineNo; n >= 1; n--) {
    const text = doc.line(n).text;
    if (sweave) {
      if (/^\s*<<.*>>=\s*$/.test(text)) return n === lineNo ? null : "r";
      if (/^\s*@/.test(text)) return null;
      continue;
    }
    const open = FENCE_OPEN.exec(text);
    if (open) return n === lineNo ? null : (NAMES[chunkInfoLanguage(open[2])] ?? null);
    if (FENCE_CLOSE.test(text)) return null;
  }
  return null;
}
