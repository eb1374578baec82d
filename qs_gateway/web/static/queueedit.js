// Changes to the queue from the page: one item's buttons (move, edit, duplicate, execute now,
// remove), the same moves from the keyboard (Alt+Up/Down/Home/End), and the selected items
// moved, duplicated or removed as one batch.

import { command } from "./api.js";
import { confirmAction } from "./dom.js";
import { report, withLockKey } from "./state.js";

/** An item as it can be sent again: without its uid, result and owner. */
export function reusable(item) {
  const copy = { item_type: item.item_type, name: item.name };
  if (item.args?.length) copy.args = item.args;
  if (item.kwargs && Object.keys(item.kwargs).length) copy.kwargs = item.kwargs;
  if (item.meta && Object.keys(item.meta).length) copy.meta = item.meta;
  return copy;
}

const KEY_MOVES = { ArrowUp: "up", ArrowDown: "down", Home: "top", End: "bottom" };

export class QueueEditor {
  /** view: the QueueView (its items, selection, message, refresh). */
  constructor(view, { onEdit }) {
    this.view = view;
    this.onEdit = onEdit;
  }

  item(uid) {
    return this.view.items.find((item) => item.item_uid === uid);
  }

  async act(work, success, focus = null) {
    try {
      await work();
      this.view.focusAfterRender = focus;
      report(this.view.message, null, success);
      await this.view.refresh();
    } catch (error) {
      report(this.view.message, error);
    }
  }

  send(path, body, success, focus = null) {
    return this.act(() => command(path, withLockKey(body)), success, focus);
  }

  /** Move the item `uid` (or all selected items, when it is one of them) before/after `target`. */
  drop(uid, where, target) {
    const selected = this.view.selection.selected();
    const uids = selected.length > 1 && selected.includes(uid) ? selected : [uid];
    if (!target || uids.includes(target)) return;
    const place = { [where === "before" ? "before_uid" : "after_uid"]: target };
    if (uids.length === 1) return this.send("queue/item/move", { uid, ...place }, `Moved ${this.item(uid).name}.`);
    return this.send("queue/item/move/batch", { uids, ...place }, `Moved ${uids.length} items.`);
  }

  /** One item up, down, to the top or to the bottom; the focus stays on the button used. */
  move(uid, how) {
    const items = this.view.items;
    const index = items.findIndex((item) => item.item_uid === uid);
    const name = items[index]?.name ?? "item";
    const focus = { uid, action: how };
    if (how === "top" || how === "bottom") {
      const pos_dest = how === "top" ? "front" : "back";
      return this.send("queue/item/move", { uid, pos_dest }, `Moved ${name} to the ${how}.`, focus);
    }
    const neighbour = items[index + (how === "up" ? -1 : 1)];
    if (!neighbour) return;
    const place = how === "up" ? { before_uid: neighbour.item_uid } : { after_uid: neighbour.item_uid };
    return this.send("queue/item/move", { uid, ...place }, `Moved ${name}.`, focus);
  }

  async rowAction(uid, action) {
    const item = this.item(uid);
    if (!item) return;
    switch (action) {
      case "up":
      case "down":
      case "top":
      case "bottom":
        return this.move(uid, action);
      case "edit":
        return this.onEdit(item);
      case "duplicate":
        return this.send("queue/item/add", { item: reusable(item), after_uid: uid }, `Duplicated ${item.name}.`);
      case "execute":
        return this.send("queue/item/execute", { item: reusable(item) }, `${item.name} is executing now.`);
      case "remove":
        return this.send("queue/item/remove", { uid }, `Removed ${item.name}.`);
    }
  }

  keyed(event) {
    const how = KEY_MOVES[event.key];
    if (!event.altKey || !how) return false;
    const row = event.target.closest("li[data-uid]");
    if (!row) return false;
    event.preventDefault();
    this.move(row.dataset.uid, how);
    return true;
  }

  async batch(action) {
    const selection = this.view.selection;
    const uids = selection.selected();
    if (action === "select-all") return selection.all();
    if (action === "select-none") return selection.clear();
    if (action === "clear") {
      if (!(await confirmAction("Remove every item from the queue?", "Clear queue"))) return;
      return this.send("queue/clear", {}, "The queue was cleared.");
    }
    if (!uids.length) return;
    const count = `${uids.length} item${uids.length === 1 ? "" : "s"}`;
    switch (action) {
      case "top":
      case "bottom":
        return this.send("queue/item/move/batch", { uids, pos_dest: action === "top" ? "front" : "back" },
          `Moved ${count} to the ${action}.`);
      case "duplicate": {
        const items = uids.map((uid) => reusable(this.item(uid)));
        return this.send("queue/item/add/batch", { items, after_uid: uids.at(-1) }, `Duplicated ${count}.`);
      }
      case "remove":
        if (!(await confirmAction(`Remove ${count} from the queue?`, "Remove"))) return;
        return this.send("queue/item/remove/batch", { uids }, `Removed ${count}.`);
    }
  }
}
