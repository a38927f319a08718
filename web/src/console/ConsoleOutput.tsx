// The console's output, virtualised: a spacer as tall as all lines, and only the lines
// near the visible area rendered into it. Follows the end while scrolled to the bottom.
// An inline plot is a thumbnail that fits the visible area; clicking it shows the plot in
// the Plots pane.
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { TID } from "../app/testids";
import type { ConsoleController } from "./controller";
import { layout, LINE_H, PLOT_FRAME, plotHeight } from "./layout";
import type { Line } from "./model";

const OVERSCAN_PX = 600;

function LineView({ line, plotH, onPlot }: { line: Line; plotH: number; onPlot: (id: string) => void }) {
  const plot = line.plot;
  if (plot) {
    return (
      <div class="console-line console-plot" data-testid={TID.consoleLine} data-stream="plot" data-line={line.n} style={{ height: `${plotH}px` }}>
        <button type="button" class="console-plot-open" data-testid="console-plot" data-plot-id={plot.id} title="Show in the Plots pane" onClick={() => onPlot(plot.id)}>
          <img src={plot.url} alt={line.text} loading="lazy" style={{ maxHeight: `${plotH - PLOT_FRAME}px` }} />
        </button>
      </div>
    );
  }
  return (
    <div class={`console-line s-${line.kind}`} data-testid={TID.consoleLine} data-stream={line.kind} data-line={line.n}>
      {line.text}
    </div>
  );
}

export function ConsoleOutput({ controller }: { controller: ConsoleController }) {
  const model = controller.model;
  const scroller = useRef<HTMLDivElement>(null);
  const follow = useRef(true);
  const [, setVersion] = useState(0);
  const [viewport, setViewport] = useState({ top: 0, height: 800 });

  useEffect(() => {
    let frame = 0;
    const off = controller.changed.on(() => {
      if (!frame) {
        frame = requestAnimationFrame(() => {
          frame = 0;
          setVersion(model.version);
        });
      }
    });
    return () => {
      off();
      cancelAnimationFrame(frame);
    };
  }, [controller]);

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setViewport({ top: el.scrollTop, height: el.clientHeight }));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && follow.current && el.scrollTop + el.clientHeight < el.scrollHeight) el.scrollTop = el.scrollHeight;
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    follow.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 2 * LINE_H;
    setViewport({ top: el.scrollTop, height: el.clientHeight });
  };

  const plotH = plotHeight(viewport.height);
  const lay = layout(model, plotH);
  const n = model.length;
  const first = n ? lay.lineAt(Math.max(0, viewport.top - OVERSCAN_PX)) : 0;
  const last = n ? lay.lineAt(viewport.top + viewport.height + OVERSCAN_PX) : -1;
  const shown: Line[] = [];
  for (let i = first; i <= last; i++) shown.push(model.line(i));

  return (
    <div
      ref={scroller}
      class="console-output"
      data-testid={TID.consoleOutput}
      data-total-lines={model.dropped + n}
      data-dropped-lines={model.dropped}
      role="log"
      aria-label="Console output"
      tabIndex={0}
      onScroll={onScroll}
    >
      <div class="console-sizer" style={{ height: `${lay.total}px` }}>
        <div class="console-window" style={{ transform: `translateY(${n ? lay.offset(first) : 0}px)` }}>
          {shown.map((l) => (
            <LineView key={l.n} line={l} plotH={plotH} onPlot={(id) => controller.openPlot(id)} />
          ))}
        </div>
      </div>
    </div>
  );
}
