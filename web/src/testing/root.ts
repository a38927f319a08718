// The element a test renders into: a fresh one in document.body for each test.
// src/testing/ holds helpers for tests only: the build never reads them, and the build's
// source hash (scripts/webhash.py) leaves them out, like the tests themselves.
import { render } from "preact";
import { afterEach, beforeEach } from "vitest";

/** Call once at the top of a test file: before each test a new element is appended to
 * document.body and handed to `use`; after the test its Preact tree is unmounted and the
 * element removed. */
export function rootPerTest(use: (root: HTMLElement) => void): void {
  let root: HTMLElement;
  beforeEach(() => {
    root = document.createElement("div");
    document.body.appendChild(root);
    use(root);
  });
  afterEach(() => {
    render(null, root);
    root.remove();
  });
}
