import { type RefObject } from "preact";
import { useEffect, useState } from "preact/hooks";

export interface Size {
  width: number;
  height: number;
}

/** The content-box size of an element, updated by a ResizeObserver (debounced by `ms`; the
 * first measurement is immediate). {0, 0} where layout is unknown (e.g. jsdom). */
export function useElementSize(ref: RefObject<HTMLElement | null>, ms = 0): Size {
  const [size, setSize] = useState<Size>({ width: 0, height: 0 });
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => {
      const w = el.clientWidth;
      const h = el.clientHeight;
      setSize((s) => (s.width === w && s.height === h ? s : { width: w, height: h }));
    };
    measure();
    if (typeof ResizeObserver === "undefined") return;
    let t: ReturnType<typeof setTimeout> | undefined;
    const ro = new ResizeObserver(() => {
      if (ms <= 0) return measure();
      clearTimeout(t);
      t = setTimeout(measure, ms);
    });
    ro.observe(el);
    return () => {
      clearTimeout(t);
      ro.disconnect();
    };
  }, [ref.current, ms]);
  return size;
}
