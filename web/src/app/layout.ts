// The workspace view's pane sizes (persisted): the Files column and the tools column in
// px, the editor's share of the centre column.
import { load, save } from "../core/storage";

export interface PaneSizes {
  files: number;
  tools: number;
  editor: number; // 0..1
}

export const LIMITS = {
  files: [140, 520],
  tools: [260, 900],
  editor: [0.1, 0.9],
} as const;

const DEFAULTS: PaneSizes = { files: 230, tools: 420, editor: 0.55 };
const KEY = "layout";

const clamp = (v: number, [lo, hi]: readonly [number, number]) => Math.min(hi, Math.max(lo, v));

export function clampSizes(s: PaneSizes): PaneSizes {
  return {
    files: clamp(s.files, LIMITS.files),
    tools: clamp(s.tools, LIMITS.tools),
    editor: clamp(s.editor, LIMITS.editor),
  };
}

export const loadSizes = (): PaneSizes => clampSizes({ ...DEFAULTS, ...load<Partial<PaneSizes>>(KEY, {}) });
export const saveSizes = (s: PaneSizes): void => save(KEY, s);
