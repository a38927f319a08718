// Whether console input is a whole statement (Enter runs it) or not yet (Enter adds a line).
import type { Language } from "../contract";
import type { SessionClient } from "../core/session";
import { scanLine } from "../editor/runLine";

const IS_COMPLETE_TIMEOUT_MS = 1500;

/** Whether ``code`` is a whole statement by a bracket/string check (the kernel knows better). */
export function looksComplete(code: string, language: Language): boolean {
  let state = { depth: 0, quote: null as string | null };
  for (const line of code.split("\n")) state = scanLine(line, state, language);
  if (state.depth > 0 || state.quote) return false;
  const lastLine = code.trimEnd().split("\n").pop() ?? "";
  if (language === "python") return !/[:\\]\s*$/.test(lastLine);
  return !/\\\s*$/.test(lastLine);
}

/** The kernel's is_complete; the local check when it cannot answer in time. */
export async function isComplete(client: SessionClient, code: string, language: Language): Promise<boolean> {
  try {
    const reply = await client.ask({ type: "is_complete", language, code }, IS_COMPLETE_TIMEOUT_MS);
    const status = reply.ok ? reply.content.status : null;
    if (status === "incomplete") return false;
    if (status === "complete" || status === "invalid") return true;
  } catch {
    // no answer in time (the session is starting): decide locally
  }
  return looksComplete(code, language);
}
