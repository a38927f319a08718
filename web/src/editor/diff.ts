// Which lines differ between two texts (a longest-common-subsequence line diff; above a
// size limit, a plain position-by-position comparison).
export interface LineDiff {
  onlyA: Set<number>;
  onlyB: Set<number>;
}

const MAX_CELLS = 4_000_000;

export function diffLines(a: string[], b: string[]): LineDiff {
  const onlyA = new Set<number>();
  const onlyB = new Set<number>();
  if (a.length * b.length > MAX_CELLS) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (a[i] !== b[i]) {
        if (i < a.length) onlyA.add(i);
        if (i < b.length) onlyB.add(i);
      }
    }
    return { onlyA, onlyB };
  }
  const w = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * w);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * w + j] = a[i] === b[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      i++;
      j++;
    } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) onlyA.add(i++);
    else onlyB.add(j++);
  }
  while (i < a.length) onlyA.add(i++);
  while (j < b.length) onlyB.add(j++);
  return { onlyA, onlyB };
}
