import { Text } from "@codemirror/state";
import { describe, expect, it } from "vitest";
import { runTarget } from "./runLine";

const doc = (s: string) => Text.of(s.split("\n"));
/** the position of the start of 1-based line n */
const at = (d: Text, n: number) => d.line(n).from;

describe("runTarget", () => {
  it("runs the current line and moves to the next non-blank line", () => {
    const d = doc("x <- 1\n\n  \ny <- 2\nz");
    const t = runTarget(d, at(d, 1) + 3, at(d, 1) + 3, "r");
    expect(t).toMatchObject({ code: "x <- 1", next: at(d, 4) });
    const t2 = runTarget(d, at(d, 4), at(d, 4), "r");
    expect(t2).toMatchObject({ code: "y <- 2", next: at(d, 5) });
  });

  it("goes to the end of the document after the last line", () => {
    const d = doc("a\nb\n\n");
    expect(runTarget(d, at(d, 2), at(d, 2), "python")).toMatchObject({ code: "b", next: d.length });
  });

  it("skips blank lines under the cursor and runs the next statement", () => {
    const d = doc("a\n\n\nb\nc");
    expect(runTarget(d, at(d, 2), at(d, 2), "r")).toMatchObject({ code: "b", next: at(d, 5) });
    const end = doc("a\n\n");
    expect(runTarget(end, at(end, 3), at(end, 3), "r")).toBeNull();
  });

  it("runs a selection as it is and leaves the cursor", () => {
    const d = doc("print(1)\nprint(2)");
    expect(runTarget(d, 0, 5, "python")).toEqual({ code: "print", from: 0, to: 5, next: null });
  });

  it("extends over open brackets and strings", () => {
    const d = doc('f <- function(x) {\n  x + 1 # (not a bracket\n}\nprint("a")\ns <- "multi\nline"\nnext');
    expect(runTarget(d, 0, 0, "r")).toMatchObject({ code: "f <- function(x) {\n  x + 1 # (not a bracket\n}", next: at(d, 4) });
    expect(runTarget(d, at(d, 5), at(d, 5), "r")).toMatchObject({ code: 's <- "multi\nline"', next: at(d, 7) });
  });

  it("follows R pipes and ggplot's + to the end of the chain", () => {
    const d = doc("df %>%\n  filter(a > 1) |>\n  head()\nggplot(df) +\n  geom_point()\n\nx");
    expect(runTarget(d, 0, 0, "r")?.code).toBe("df %>%\n  filter(a > 1) |>\n  head()");
    expect(runTarget(d, at(d, 4), at(d, 4), "r")).toMatchObject({ code: "ggplot(df) +\n  geom_point()", next: at(d, 7) });
  });

  it("knows Python's triple-quoted strings and backslash continuation", () => {
    const d = doc('s = """a\n(b\n"""\nx = 1 + \\\n  2\ny = "#("');
    expect(runTarget(d, 0, 0, "python")?.code).toBe('s = """a\n(b\n"""');
    expect(runTarget(d, at(d, 4), at(d, 4), "python")?.code).toBe("x = 1 + \\\n  2");
    expect(runTarget(d, at(d, 6), at(d, 6), "python")).toMatchObject({ code: 'y = "#("', next: d.length });
  });
});
