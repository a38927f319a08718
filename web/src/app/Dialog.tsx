// A modal dialog on the native <dialog> element (focus is kept inside, Escape cancels).
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

interface Props {
  title: string;
  onClose(): void;
  children: ComponentChildren;
  testid?: string;
  wide?: boolean;
}

export function Dialog({ title, onClose, children, testid, wide }: Props) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      class={wide ? "dialog wide" : "dialog"}
      aria-label={title}
      data-testid={testid}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <h2 class="dialog-title">{title}</h2>
      {children}
    </dialog>
  );
}

interface PromptProps {
  title: string;
  label: string;
  initial?: string;
  submitLabel: string;
  onSubmit(value: string): void | Promise<void>;
  onClose(): void;
}

/** A dialog asking for one line of text (a name, a path). */
export function PromptDialog({ title, label, initial = "", submitLabel, onSubmit, onClose }: PromptProps) {
  return (
    <Dialog title={title} onClose={onClose}>
      <form
        class="dialog-form"
        onSubmit={async (e) => {
          e.preventDefault();
          // As typed: the hub's rules name what is wrong with a blank name or stray spaces.
          const value = new FormData(e.currentTarget).get("value");
          if (typeof value === "string") await onSubmit(value);
        }}
      >
        <label>
          {label}
          <input name="value" value={initial} autoFocus required autocomplete="off" />
        </label>
        <div class="dialog-buttons">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="primary">
            {submitLabel}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

interface ConfirmProps {
  title: string;
  message: string;
  confirmLabel: string;
  onConfirm(): void | Promise<void>;
  onClose(): void;
  testid?: string;
}

export function ConfirmDialog({ title, message, confirmLabel, onConfirm, onClose, testid }: ConfirmProps) {
  return (
    <Dialog title={title} onClose={onClose} testid={testid}>
      <p>{message}</p>
      <div class="dialog-buttons">
        <button type="button" onClick={onClose} autoFocus>
          Cancel
        </button>
        <button type="button" class="primary danger-bg" onClick={() => onConfirm()}>
          {confirmLabel}
        </button>
      </div>
    </Dialog>
  );
}
