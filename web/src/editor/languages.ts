// Syntax highlighting per file type, loaded on demand (each language is its own chunk).
import { indentUnit, LanguageDescription, LanguageSupport, StreamLanguage } from "@codemirror/language";
import type { Extension } from "@codemirror/state";
import { fileType } from "../core/files";
import type { Syntax } from "../generated/protocol";

export function syntaxForPath(path: string): Syntax {
  return fileType(path)?.syntax ?? "text";
}

const r = async () => new LanguageSupport(StreamLanguage.define((await import("@codemirror/legacy-modes/mode/r")).r));
const shell = async () =>
  new LanguageSupport(StreamLanguage.define((await import("@codemirror/legacy-modes/mode/shell")).shell));
const python = async () => [(await import("@codemirror/lang-python")).python(), indentUnit.of("    ")];
const sql = async () => (await import("@codemirror/lang-sql")).sql();

/** Languages of fenced code chunks in Markdown, R Markdown and Quarto (```{r}, ```python). */
const chunkLanguages = [
  LanguageDescription.of({ name: "r", alias: ["R"], load: r }),
  LanguageDescription.of({ name: "python", alias: ["py", "python3"], load: async () => (await import("@codemirror/lang-python")).python() }),
  LanguageDescription.of({ name: "bash", alias: ["sh", "shell"], load: shell }),
  LanguageDescription.of({ name: "sql", load: sql }),
];

/** "{r setup, echo=FALSE}" → "r" */
export function chunkInfoLanguage(info: string): string {
  return info.replace(/^[{\s]+/, "").split(/[\s,}]/)[0].toLowerCase();
}

export async function loadSyntax(syntax: Syntax): Promise<Extension> {
  switch (syntax) {
    case "r":
      return r();
    case "python":
      return python();
    case "bash":
      return shell();
    case "sql":
      return sql();
    case "latex":
      return new LanguageSupport(StreamLanguage.define((await import("@codemirror/legacy-modes/mode/stex")).stex));
    case "markdown": {
      const { markdown, markdownLanguage } = await import("@codemirror/lang-markdown");
      return markdown({
        base: markdownLanguage,
        codeLanguages: (info) => LanguageDescription.matchLanguageName(chunkLanguages, chunkInfoLanguage(info), false),
      });
    }
    case "json":
      return new LanguageSupport(StreamLanguage.define((await import("@codemirror/legacy-modes/mode/javascript")).json));
    case "text":
      return [];
    default:
      syntax satisfies never;
      return [];
  }
}
