// A save that lost a race: the file changed on the hub since it was opened here. Shows both
// versions side by side; keep mine (save over the new version), take theirs, or cancel.
import { useEffect, useRef } from "preact/hooks";
import { Dialog } from "../app/Dialog";
import { TID } from "../app/testids";
import { diffLines } from "./diff";

export interface Conflict {
  path: string;
  mine: string;
  theirs: string;
  /** 0: the file was deleted on the hub */
  theirsVersion: number;
}

interface Props {
  conflict: Conflict;
  onKeepMine(): void;
  onTakeTheirs(): void;
  onCancel(): void;
}

interface SideProps {
  title: string;
  lines: string[];
  changed: Set<number>;
  onScroll(top: number, left: number): void;
  scrollRef: { current: HTMLPreElement | null };
}

function Side({ title, lines, changed, onScroll, scrollRef }: SideProps) {
  return (
    <section class="conflict-side" aria-label={title}>
      <h3>{title}</h3>
      <pre
        class="conflict-text"
        ref={scrollRef}
        tabIndex={0}
        onScroll={(e) => onScroll(e.currentTarget.scrollTop, e.currentTarget.scrollLeft)}
      >
        {lines.map((l, i) => (
          <div key={i} class={changed.has(i) ? "conflict-line changed" : "conflict-line"}>
            {l || " "}
          </div>
        ))}
      </pre>
    </section>
  );
}

export function ConflictDialog({ conflict, onKeepMine, onTakeTheirs, onCancel }: Props) {
  const mine = conflict.mine.split("\n");
  const theirs = conflict.theirs.split("\n");
  const diff = diffLines(mine, theirs);
  const gone = conflict.theirsVersion === 0;
  const left = useRef<HTMLPreElement>(null);
  const right = useRef<HTMLPreElement>(null);
  // both sides scroll together; start at the first difference
  const follow = (other: { current: HTMLPreElement | null }) => (top: number, x: number) => {
    const el = other.current;
    if (el && (el.scrollTop !== top || el.scrollLeft !== x)) {
      el.scrollTop = top;
      el.scrollLeft = x;
    }
  };
  useEffect(() => {
    const first = Math.min(...diff.onlyA, ...diff.onlyB);
    const el = left.current?.children[Math.min(first, mine.length - 1)] as HTMLElement | undefined;
    if (Number.isFinite(first) && el && left.current) left.current.scrollTop = Math.max(0, el.offsetTop - 60);
  }, []);
  return (
    <Dialog title={`${conflict.path} changed elsewhere`} onClose={onCancel} testid={TID.conflictDialog} wide>
      <p>
        {gone
          ? "The file was deleted since you opened it."
          : `Someone (or some code) saved version ${conflict.theirsVersion} since you opened it.`}{" "}
        Changed lines are marked.
      </p>
      <div class="conflict-sides">
        <Side title="Mine (this editor)" lines={mine} changed={diff.onlyA} scrollRef={left} onScroll={follow(right)} />
        <Side
          title={gone ? "Theirs (deleted)" : `Theirs (version ${conflict.theirsVersion})`}
          lines={theirs}
          changed={diff.onlyB}
          scrollRef={right}
          onScroll={follow(left)}
        />
      </div>
      <div class="dialog-buttons">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" data-testid={TID.conflictTakeTheirs} onClick={onTakeTheirs} disabled={gone}>
          Take theirs
        </button>
        <button type="button" class="primary" data-testid={TID.conflictKeepMine} onClick={onKeepMine} autoFocus>
          Keep mine
        </button>
      </div>
    </Dialog>
  );
}
