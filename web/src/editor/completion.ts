// Code completion from the session's kernels ({type: "complete"} → reply {matches,
// cursor_start, cursor_end}; positions in code points, as Jupyter counts them).
import type { CompletionContext, CompletionResult, CompletionSource } from "@codemirror/autocomplete";
import type { Language } from "../contract";
import type { SessionClient } from "../core/session";

/** code points → UTF-16 offset in ``text`` */
export function utf16Offset(text: string, codePoints: number): number {
  let offset = 0;
  let n = 0;
  for (const ch of text) {
    if (n === codePoints) break;
    offset += ch.length;
    n++;
  }
  return offset;
}

export const codePointLength = (text: string): number => [...text].length;

/** A CodeMirror completion source asking the kernel; ``scope`` picks the code to send
 * (the whole input, or the current line of a file) and the language. */
export function kernelCompletion(
  client: SessionClient,
  scope: (ctx: CompletionContext) => { language: Language; code: string; offset: number } | null,
): CompletionSource {
  return async (ctx: CompletionContext): Promise<CompletionResult | null> => {
    const s = scope(ctx);
    if (!s) return null;
    const cursor = ctx.pos - s.offset;
    try {
      const reply = await client.ask(
        { type: "complete", language: s.language, code: s.code, cursor_pos: codePointLength(s.code.slice(0, cursor)) },
        5000,
      );
      const matches = Array.isArray(reply.content.matches) ? reply.content.matches.map(String) : [];
      if (!reply.ok || !matches.length || ctx.aborted) return null;
      const start = Number(reply.content.cursor_start ?? cursor);
      const end = Number(reply.content.cursor_end ?? cursor);
      return {
        from: s.offset + utf16Offset(s.code, start),
        to: s.offset + utf16Offset(s.code, end),
        options: matches.slice(0, 500).map((label) => ({ label })),
        filter: false,
      };
    } catch {
      return null;
    }
  };
}
