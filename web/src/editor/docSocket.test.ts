import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { aheadOf, decodeVector, docSocketUrl } from "./docSocket";

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

describe("docSocket helpers", () => {
  it("builds the document socket's URL with the path's segments encoded", () => {
    const loc = { protocol: "https:", host: "hub.example:8443" } as Location;
    expect(docSocketUrl("w 1", "dir/a b.R", loc)).toBe("wss://hub.example:8443/api/workspaces/w%201/doc/dir/a%20b.R");
  });

  it("tells edits in no version from a version's state vector", () => {
    const doc = new Y.Doc();
    doc.getText("content").insert(0, "saved");
    const version = decodeVector(b64(Y.encodeStateVector(doc)));
    expect(aheadOf(doc, version)).toBe(false);
    doc.getText("content").insert(5, " and more");
    expect(aheadOf(doc, version)).toBe(true);
    // another window's edit that is in the version is not "ahead"
    const other = new Y.Doc();
    Y.applyUpdate(other, Y.encodeStateAsUpdate(doc));
    expect(aheadOf(other, decodeVector(b64(Y.encodeStateVector(doc))))).toBe(false);
  });
});
