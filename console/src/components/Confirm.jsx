import { useEffect, useRef } from "react";

/**
 * A modal confirmation (the native <dialog>: focus stays inside, Escape cancels).
 * `open` shows it; the message must name exactly what will happen.
 */
export default function Confirm({ open, title, children, confirmLabel = "Confirm", danger, onConfirm, onCancel }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  return (
    <dialog ref={ref} className="confirm" aria-labelledby="confirm-title" onCancel={onCancel}>
      <h2 id="confirm-title">{title}</h2>
      <div>{children}</div>
      <div className="actions">
        <button type="button" className={danger ? "danger" : undefined} onClick={onConfirm}>
          {confirmLabel}
        </button>
        <button type="button" className="quiet" onClick={onCancel} autoFocus>
          Cancel
        </button>
      </div>
    </dialog>
  );
}
