// A drag handle between two panes (role=separator): drag with the pointer, or focus it and
// use the arrow keys.
interface Props {
  orientation: "vertical" | "horizontal"; // vertical: a column divider (resizes widths)
  label: string;
  value: number;
  min: number;
  max: number;
  /** called with the pointer's movement in px since the last call */
  onDelta(px: number): void;
}

const STEP = 24;

export function Splitter({ orientation, label, value, min, max, onDelta }: Props) {
  const vertical = orientation === "vertical";
  const onPointerDown = (e: PointerEvent) => {
    const el = e.currentTarget as HTMLElement;
    el.setPointerCapture(e.pointerId);
    let last = vertical ? e.clientX : e.clientY;
    const move = (m: PointerEvent) => {
      const pos = vertical ? m.clientX : m.clientY;
      onDelta(pos - last);
      last = pos;
    };
    const up = () => {
      el.removeEventListener("pointermove", move);
      el.removeEventListener("pointerup", up);
      el.removeEventListener("pointercancel", up);
      document.body.classList.remove("resizing");
    };
    el.addEventListener("pointermove", move);
    el.addEventListener("pointerup", up);
    el.addEventListener("pointercancel", up);
    document.body.classList.add("resizing");
    e.preventDefault();
  };
  const onKeyDown = (e: KeyboardEvent) => {
    const back = vertical ? "ArrowLeft" : "ArrowUp";
    const fwd = vertical ? "ArrowRight" : "ArrowDown";
    if (e.key === back) onDelta(-STEP);
    else if (e.key === fwd) onDelta(STEP);
    else return;
    e.preventDefault();
  };
  return (
    <div
      class={`splitter ${orientation}`}
      role="separator"
      aria-orientation={orientation}
      aria-label={label}
      aria-valuenow={Math.round(value)}
      aria-valuemin={min}
      aria-valuemax={max}
      tabIndex={0}
      onPointerDown={onPointerDown}
      onKeyDown={onKeyDown}
    />
  );
}
