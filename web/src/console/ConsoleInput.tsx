// The console's input: a small CodeMirror editor. Enter runs the input when it is a
// complete statement (the kernel's is_complete; a local bracket check while it cannot
// answer), else inserts a newline; Shift+Enter always inserts one. Up/Down on the first/last
// line walk the history; Tab completes from the kernel; Ctrl+L clears the output.
import { autocompletion, closeBrackets, closeBracketsKeymap, startCompletion } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentMore, insertNewlineAndIndent } from "@codemirror/commands";
import { bracketMatching, indentOnInput } from "@codemirror/language";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap, placeholder } from "@codemirror/view";
import { useEffect, useRef } from "preact/hooks";
import { TID } from "../app/testids";
import type { Language } from "../contract";
import type { SessionClient } from "../core/session";
import { cmTheme } from "../editor/cmTheme";
import { kernelCompletion } from "../editor/completion";
import { loadSyntax } from "../editor/languages";
import type { ConsoleController } from "./controller";
import { isComplete, looksComplete } from "./complete";
import { InputHistory } from "./history";

interface Props {
  workspaceId: string;
  language: Language;
  client: SessionClient;
  controller: ConsoleController;
  canWrite: boolean;
}

export function ConsoleInput({ workspaceId, language, client, controller, canWrite }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const lang = useRef(language);
  const syntax = useRef(new Compartment());
  const editable = useRef(new Compartment());
  const hist = useRef(new InputHistory(`history.${workspaceId}`));
  lang.current = language;

  useEffect(() => {
    let checking = false;
    let enterAgain = false;
    const setText = (v: EditorView, text: string) =>
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: text }, selection: { anchor: text.length } });

    const run = (v: EditorView, code: string) => {
      hist.current.add(code);
      if (controller.execute(code, lang.current)) setText(v, ""); // else kept: not sent
    };

    const submit = (v: EditorView): boolean => {
      if (checking) {
        enterAgain = true; // pressed again before the kernel answered: handled after it
        return true;
      }
      const doc = v.state.doc;
      const code = doc.toString();
      if (!code.trim()) return true;
      // A blank last line ends a block (as in Python's REPL): run what is above it.
      const lastBlank = doc.lines > 1 && !doc.line(doc.lines).text.trim() && v.state.selection.main.head === doc.length;
      if (lastBlank && looksComplete(code, lang.current)) {
        run(v, code.trimEnd());
        return true;
      }
      // An open bracket, string or block: a newline without asking the kernel.
      if (!looksComplete(code, lang.current)) return insertNewlineAndIndent(v);
      checking = true;
      void isComplete(client, code, lang.current).then((complete) => {
        checking = false;
        const now = v.state.doc.toString();
        if (now !== code) {
          enterAgain = false;
          // typed on while the kernel was asked: keep the newline where Enter was pressed
          if (!complete && now.startsWith(code)) v.dispatch({ changes: { from: code.length, insert: "\n" } });
          return;
        }
        if (complete) run(v, code);
        else insertNewlineAndIndent(v);
        if (enterAgain) {
          enterAgain = false;
          submit(v);
        }
      });
      return true;
    };

    const keys = keymap.of([
      { key: "Enter", run: submit },
      { key: "Shift-Enter", run: insertNewlineAndIndent },
      {
        key: "ArrowUp",
        run: (v) => {
          if (v.state.doc.lineAt(v.state.selection.main.head).number !== 1) return false;
          const entry = hist.current.older(v.state.doc.toString());
          if (entry !== null) setText(v, entry);
          return true;
        },
      },
      {
        key: "ArrowDown",
        run: (v) => {
          if (v.state.doc.lineAt(v.state.selection.main.head).number !== v.state.doc.lines) return false;
          const entry = hist.current.newer();
          if (entry !== null) setText(v, entry);
          return entry !== null;
        },
      },
      {
        key: "Tab",
        run: (v) => {
          const { head } = v.state.selection.main;
          const before = v.state.doc.lineAt(head).text.slice(0, head - v.state.doc.lineAt(head).from);
          return before.trim() ? startCompletion(v) : indentMore(v);
        },
      },
      {
        key: "Ctrl-l",
        run: () => {
          controller.clear();
          return true;
        },
      },
    ]);

    const complete = kernelCompletion(client, (ctx) => ({ language: lang.current, code: ctx.state.doc.toString(), offset: 0 }));
    const v = new EditorView({
      parent: host.current as HTMLElement,
      state: EditorState.create({
        extensions: [
          history(),
          closeBrackets(),
          bracketMatching(),
          indentOnInput(),
          autocompletion({ override: [complete], activateOnTyping: false }),
          Prec.highest(keys),
          keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap]),
          syntax.current.of([]),
          editable.current.of(EditorView.editable.of(canWrite)),
          placeholder("Type code; Enter runs it, Shift+Enter adds a line"),
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ "aria-label": "Console input" }),
          cmTheme,
        ],
      }),
    });
    view.current = v;
    return () => {
      v.destroy();
      view.current = null;
    };
  }, [client, controller]);

  useEffect(() => {
    let live = true;
    void loadSyntax(language).then((ext) => {
      if (live) view.current?.dispatch({ effects: syntax.current.reconfigure(ext) });
    });
    return () => {
      live = false;
    };
  }, [language]);

  useEffect(() => {
    view.current?.dispatch({ effects: editable.current.reconfigure(EditorView.editable.of(canWrite)) });
  }, [canWrite]);

  return <div ref={host} class="console-input" data-testid={TID.consoleInput} data-language={language} />;
}
