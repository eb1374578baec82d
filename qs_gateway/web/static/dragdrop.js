// Reordering a list by dragging a row's handle, with pointer events (mouse, pen and touch
// alike). The same moves are buttons and keys of each row (queueedit.js).

/**
 * Follow a drag that starts on a `.handle` of `list`; `onDrop(uid, where, targetUid)` with
 * where "before" or "after" when the row is let go over another row.
 */
export function dragToReorder(list, onDrop) {
  list.addEventListener("pointerdown", (event) => {
    const handle = event.target.closest(".handle");
    if (!handle || event.button !== 0 || handle.getAttribute("aria-disabled") === "true") return;
    const row = handle.closest("li[data-uid]");
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    row.classList.add("dragging");
    let drop = null;
    const clearMarks = () => {
      for (const other of list.children) other.classList.remove("drop-before", "drop-after");
    };
    const moved = (move) => {
      clearMarks();
      drop = null;
      for (const other of list.children) {
        const box = other.getBoundingClientRect();
        if (move.clientY >= box.top && move.clientY <= box.bottom && other !== row) {
          const where = move.clientY < box.top + box.height / 2 ? "before" : "after";
          other.classList.add(`drop-${where}`);
          drop = { where, target: other.dataset.uid };
        }
      }
    };
    const listening = new AbortController();
    const ended = (cancelled) => {
      listening.abort();
      row.classList.remove("dragging");
      clearMarks();
      if (drop && !cancelled) onDrop(row.dataset.uid, drop.where, drop.target);
    };
    const options = { signal: listening.signal };
    handle.addEventListener("pointermove", moved, options);
    handle.addEventListener("pointerup", () => ended(false), options);
    handle.addEventListener("pointercancel", () => ended(true), options);
  });
}
