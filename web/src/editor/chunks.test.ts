import { Text } from "@codemirror/state";
import { describe, expect, it } from "vitest";
import { chunkLanguage } from "./chunks";

const doc = (s: string) => Text.of(s.split("\n"));

describe("chunkLanguage", () => {
  const rmd = doc("# Title\n\n```{r setup, echo=FALSE}\nx <- 1\n```\n\ntext\n```{python}\nprint(1)\n```\n```\nplain\n```");
  it("finds the chunk's language", () => {
    expect(chunkLanguage(rmd, 4)).toBe("r");
    expect(chunkLanguage(rmd, 9)).toBe("python");
  });
  it("is null outside chunks, on fences and in plain code blocks", () => {
    expect(chunkLanguage(rmd, 1)).toBeNull();
    expect(chunkLanguage(rmd, 3)).toBeNull();
    expect(chunkLanguage(rmd, 7)).toBeNull();
    expect(chunkLanguage(rmd, 12)).toBeNull();
  });
  it("knows Sweave chunks", () => {
    const rnw = doc("\\section{A}\n<<fit, echo=TRUE>>=\nlm(y ~ x)\n@\ntext");
    expect(chunkLanguage(rnw, 3, true)).toBe("r");
    expect(chunkLanguage(rnw, 5, true)).toBeNull();
  });
});
