import { describe, expect, it } from "vitest";
import { buildFilter, columnClass, describeFilter, opsFor, splitList } from "./filters";

describe("filters", () => {
  it("classifies column types", () => {
    expect(columnClass({ type: "numeric" })).toBe("number");
    expect(columnClass({ type: "integer" })).toBe("number");
    expect(columnClass({ type: "int64" })).toBe("number");
    expect(columnClass({ type: "float32" })).toBe("number");
    expect(columnClass({ type: "character" })).toBe("text");
    expect(columnClass({ type: "factor" })).toBe("text");
    expect(columnClass({ type: "object" })).toBe("text");
    expect(columnClass({ type: "logical" })).toBe("logical");
    expect(columnClass({ type: "bool" })).toBe("logical");
    expect(columnClass({ type: "Date" })).toBe("date");
    expect(columnClass({ type: "POSIXct" })).toBe("date");
    expect(columnClass({ type: "datetime64[ns]" })).toBe("date");
    expect(columnClass({ type: "list" })).toBe("other");
    expect(columnClass({ type: "object", family: "number" })).toBe("number");
    expect(columnClass({ type: "Int64", family: "number" })).toBe("number");
    expect(columnClass({ type: "category", family: "category" })).toBe("text");
  });

  it("offers operators by class", () => {
    expect(opsFor("number").map((o) => o.op)).toContain("between");
    expect(opsFor("text").map((o) => o.op)).toEqual(["contains", "regex", "eq", "ne", "in", "is_missing", "not_missing"]);
    for (const c of ["number", "text", "logical", "date", "other"] as const) {
      expect(opsFor(c).map((o) => o.op)).toContain("is_missing");
      expect(opsFor(c).map((o) => o.op)).toContain("not_missing");
    }
  });

  it("builds filters from input", () => {
    expect(buildFilter("mpg", "number", "ge", " 20 ")).toEqual({ filter: { column: "mpg", op: "ge", value: 20 } });
    expect(buildFilter("mpg", "number", "ge", "abc")).toEqual({ error: "“abc” is not a number." });
    expect(buildFilter("mpg", "number", "between", "1", "2.5")).toEqual({ filter: { column: "mpg", op: "between", min: 1, max: 2.5 } });
    expect("error" in buildFilter("mpg", "number", "between", "1", "")).toBe(true);
    expect(buildFilter("cyl", "number", "in", "4, 6,8")).toEqual({ filter: { column: "cyl", op: "in", values: [4, 6, 8] } });
    expect(buildFilter("name", "text", "contains", "Merc")).toEqual({ filter: { column: "name", op: "contains", value: "Merc" } });
    expect(buildFilter("name", "text", "regex", "^M.*")).toEqual({ filter: { column: "name", op: "regex", pattern: "^M.*" } });
    expect(buildFilter("name", "text", "in", 'a, "b, c"')).toEqual({ filter: { column: "name", op: "in", values: ["a", "b, c"] } });
    expect(buildFilter("name", "text", "eq", "")).toEqual({ filter: { column: "name", op: "eq", value: "" } });
    expect(buildFilter("am", "logical", "eq", "TRUE")).toEqual({ filter: { column: "am", op: "eq", value: true } });
    expect(buildFilter("d", "date", "lt", "2024-01-01")).toEqual({ filter: { column: "d", op: "lt", value: "2024-01-01" } });
    expect(buildFilter("x", "other", "is_missing", "ignored")).toEqual({ filter: { column: "x", op: "is_missing" } });
  });

  it("splits lists", () => {
    expect(splitList("a, b ,c")).toEqual(["a", "b", "c"]);
    expect(splitList('"x, y", z')).toEqual(["x, y", "z"]);
    expect(splitList("")).toEqual([]);
    expect(splitList("a,,b")).toEqual(["a", "b"]);
  });

  it("describes filters", () => {
    expect(describeFilter({ column: "mpg", op: "ge", value: 20 })).toBe("mpg ≥ 20");
    expect(describeFilter({ column: "n", op: "contains", value: "x" })).toBe("n contains “x”");
    expect(describeFilter({ column: "c", op: "in", values: [4, 6] })).toBe("c in (4, 6)");
    expect(describeFilter({ column: "c", op: "between", min: 1, max: 2 })).toBe("c between 1 and 2");
    expect(describeFilter({ column: "c", op: "is_missing" })).toBe("c is missing");
    expect(describeFilter({ column: "c", op: "regex", pattern: "^a" })).toBe("c ~ /^a/");
  });
});
