// Find in a help page: every match of a text is wrapped in <mark class="rp-find-hit">
// (case-insensitive, across the page's text nodes; a match never spans two elements), one is
// "current" (rp-find-current) and can be stepped forward and back. The page is the hub's
// sanitized HTML inserted in the pane's own DOM (not a frame), so this walks it directly;
// clearFind puts the text nodes back as they were.

export const HIT_CLASS = "rp-find-hit";
export const CURRENT_CLASS = "rp-find-current";
const MAX_HITS = 5000;

/** Remove every mark of a previous find (the text is merged back into plain text nodes). */
export function clearFind(root: HTMLElement): void {
  const marks = root.querySelectorAll(`mark.${HIT_CLASS}`);
  if (marks.length === 0) return;
  const parents = new Set<Node>();
  for (const m of marks) {
    const parent = m.parentNode;
    if (!parent) continue;
    parent.replaceChild(document.createTextNode(m.textContent ?? ""), m);
    parents.add(parent);
  }
  for (const p of parents) p.normalize();
}

/** Mark every occurrence of `text` under `root`; returns the marks in document order. */
export function findAll(root: HTMLElement, text: string): HTMLElement[] {
  clearFind(root);
  const needle = text.toLowerCase();
  if (!needle) return [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) nodes.push(n as Text);
  const hits: HTMLElement[] = [];
  for (const node of nodes) {
    const value = node.data;
    const lower = value.toLowerCase();
    let at = lower.indexOf(needle);
    if (at < 0) continue;
    const frag = document.createDocumentFragment();
    let from = 0;
    while (at >= 0 && hits.length < MAX_HITS) {
      if (at > from) frag.appendChild(document.createTextNode(value.slice(from, at)));
      const mark = document.createElement("mark");
      mark.className = HIT_CLASS;
      mark.textContent = value.slice(at, at + needle.length);
      frag.appendChild(mark);
      hits.push(mark);
      from = at + needle.length;
      at = lower.indexOf(needle, from);
    }
    if (from < value.length) frag.appendChild(document.createTextNode(value.slice(from)));
    node.parentNode?.replaceChild(frag, node);
    if (hits.length >= MAX_HITS) break;
  }
  return hits;
}

/** Make hit `index` (wrapped around) the current one and scroll it into view; returns it. */
export function setCurrent(hits: HTMLElement[], index: number): number {
  if (hits.length === 0) return -1;
  const i = ((index % hits.length) + hits.length) % hits.length;
  for (const h of hits) h.classList.remove(CURRENT_CLASS);
  const cur = hits[i]!;
  cur.classList.add(CURRENT_CLASS);
  cur.scrollIntoView?.({ block: "center" });
  return i;
}
