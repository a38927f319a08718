import { describe, expect, it } from "vitest";
import { hrefFor, parseRoute } from "./route";

describe("routes", () => {
  it("parses and builds hashes", () => {
    expect(parseRoute("")).toEqual({ page: "home" });
    expect(parseRoute("#/")).toEqual({ page: "home" });
    expect(parseRoute("#/admin")).toEqual({ page: "admin" });
    expect(parseRoute("#/shared")).toEqual({ page: "shared" });
    expect(hrefFor({ page: "shared" })).toBe("#/shared");
    expect(hrefFor({ page: "admin" })).toBe("#/admin");
    expect(parseRoute("#/ws/abc123")).toEqual({ page: "workspace", id: "abc123" });
    expect(parseRoute("#/nonsense")).toEqual({ page: "home" });
    expect(hrefFor({ page: "workspace", id: "a b" })).toBe("#/ws/a%20b");
  });
});
