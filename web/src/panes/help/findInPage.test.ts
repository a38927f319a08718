import { describe, expect, it } from "vitest";
import { clearFind, CURRENT_CLASS, findAll, setCurrent } from "./findInPage";

function page(html: string): HTMLElement {
  const el = document.createElement("div");
  el.innerHTML = html;
  return el;
}

describe("find in page", () => {
  it("marks every match case-insensitively, steps with wrap-around, and clears", () => {
    const html = "<h2>Plot</h2><p>the <code>plot</code> of plots; PLOT again</p>";
    const el = page(html);
    const hits = findAll(el, "plot");
    expect(hits.map((h) => h.textContent)).toEqual(["Plot", "plot", "plot", "PLOT"]);
    expect(el.textContent).toBe("Plotthe plot of plots; PLOT again");
    expect(setCurrent(hits, 0)).toBe(0);
    expect(hits[0]!.classList.contains(CURRENT_CLASS)).toBe(true);
    expect(setCurrent(hits, -1)).toBe(3);
    expect(hits[0]!.classList.contains(CURRENT_CLASS)).toBe(false);
    expect(setCurrent(hits, 4)).toBe(0);
    // a new search replaces the old marks
    expect(findAll(el, "again")).toHaveLength(1);
    expect(el.querySelectorAll("mark")).toHaveLength(1);
    clearFind(el);
    expect(el.innerHTML).toBe(html);
  });

  it("finds nothing for an empty or absent text", () => {
    const el = page("<p>abc</p>");
    expect(findAll(el, "")).toEqual([]);
    expect(findAll(el, "zzz")).toEqual([]);
    expect(setCurrent([], 1)).toBe(-1);
    expect(el.innerHTML).toBe("<p>abc</p>");
  });
});
