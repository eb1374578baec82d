// The Queue panel: the running item with its runs, and the queued items, which can be selected,
// reordered (drag and drop, buttons, Alt+arrow keys), edited, duplicated, executed and removed.

import { getVersion } from "./api.js";
import { gate } from "./access.js";
import { byId, describeParameters, fromTemplate } from "./dom.js";
import { dragToReorder } from "./dragdrop.js";
import { QueueEditor } from "./queueedit.js";
import { itemName, RunningView } from "./running.js";
import { Selection } from "./selection.js";
import { allowed, report } from "./state.js";

export { reusable } from "./queueedit.js";

const BATCH_NEEDS_SELECTION = ["top", "bottom", "duplicate", "remove"];
const BATCH_NEEDS_ITEMS = ["select-all", "clear"];

export class QueueView {
  constructor({ onEdit }) {
    this.list = byId("queue-list");
    this.message = byId("queue-message");
    this.denied = byId("queue-denied");
    this.bar = document.querySelector(".selection-bar");
    this.items = [];
    this.etag = null;
    this.queueUid = null;
    this.focusAfterRender = null;
    this.canExecute = false; // RE Manager idle with its environment open (kept by onStatus)
    this.running = new RunningView({ onError: (error) => report(this.message, error) });
    this.editor = new QueueEditor(this, { onEdit });
    this.selection = new Selection(this.list, () => [...this.list.children], (uids) => this.selectionChanged(uids));
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-row]");
      if (button) this.editor.rowAction(button.closest("li").dataset.uid, button.dataset.row);
    });
    this.list.addEventListener("keydown", (event) => {
      if (allowed("write:queue:edit")) this.editor.keyed(event);
    });
    this.bar.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-batch]");
      if (button) this.editor.batch(button.dataset.batch);
    });
    dragToReorder(this.list, (uid, where, target) => this.editor.drop(uid, where, target));
  }

  reset() {
    this.items = [];
    this.etag = this.queueUid = null;
    this.list.replaceChildren();
    this.running.reset();
    this.selection.clear();
  }

  /** Fetch the queue again only when RE Manager says it changed. */
  onStatus(status) {
    if (status.plan_queue_uid !== this.queueUid) {
      this.queueUid = status.plan_queue_uid;
      this.refresh(this.queueUid);
    }
    if (allowed("read:monitor")) this.running.refreshRuns(status.run_list_uid);
    // Execute now depends on RE Manager's state, not only on the queue
    const canExecute = status.manager_state === "idle" && Boolean(status.worker_environment_exists);
    if (canExecute !== this.canExecute) {
      this.canExecute = canExecute;
      [...this.list.children].forEach((row, index) => this.gateRow(row, this.items[index], index));
    }
    this.selectionChanged(this.selection.selected());
  }

  /** Fetch the queue; `wanted`: the plan_queue_uid a status announced (after our own change the
   * gateway answers with the new queue anyway). */
  async refresh(wanted = null) {
    try {
      const answer = await getVersion("queue/get", "plan_queue_uid", wanted, this.etag);
      if (answer.notModified) return;
      this.etag = answer.etag;
      this.render(answer.data);
    } catch (error) {
      report(this.message, error);
    }
  }

  selectionChanged(uids) {
    const editable = allowed("write:queue:edit");
    for (const button of this.bar.querySelectorAll("button[data-batch]")) {
      button.disabled = false;
      if (!gate(button, "write:queue:edit", this.denied)) continue;
      if (BATCH_NEEDS_SELECTION.includes(button.dataset.batch)) button.disabled = uids.length === 0;
      if (BATCH_NEEDS_ITEMS.includes(button.dataset.batch)) button.disabled = this.items.length === 0;
    }
    byId("queue-selected").textContent = editable && uids.length ? `${uids.length} selected` : "";
  }

  /** Each button of a row: enabled when the scopes and the item's place allow it. */
  gateRow(row, item, index) {
    const nameId = `queue-item-${item.item_uid}`;
    const possible = {
      up: index > 0,
      top: index > 0,
      down: index < this.items.length - 1,
      bottom: index < this.items.length - 1,
      edit: item.item_type === "plan",
      execute: this.canExecute && item.item_type === "plan",
    };
    for (const button of row.querySelectorAll("button[data-row]")) {
      const action = button.dataset.row;
      button.disabled = false;
      const scope = action === "execute" ? "write:execute" : "write:queue:edit";
      if (gate(button, scope, this.denied, nameId)) button.disabled = possible[action] === false;
    }
    const pick = row.querySelector(".pick");
    pick.setAttribute("aria-describedby", nameId);
    row.querySelector(".handle").setAttribute("aria-disabled", String(!allowed("write:queue:edit")));
  }

  render(data) {
    // The rows are built anew: the focus stays on the same control of the same item.
    const active = document.activeElement;
    const activeRow = this.list.contains(active) ? active.closest("li[data-uid]") : null;
    const focus =
      this.focusAfterRender ||
      (activeRow && { uid: activeRow.dataset.uid, action: active.dataset.row ?? (active.classList.contains("pick") ? "pick" : null) });
    this.focusAfterRender = null;
    this.items = data.items || [];
    this.running.show(data.running_item || {});
    const rows = this.items.map((item, index) => {
      const row = fromTemplate("queue-row");
      row.dataset.uid = item.item_uid;
      row.querySelector(".pos").textContent = String(index + 1);
      const name = row.querySelector(".name");
      name.textContent = itemName(item);
      name.id = `queue-item-${item.item_uid}`;
      row.setAttribute("aria-labelledby", name.id);
      row.querySelector(".params").textContent = describeParameters(item);
      row.querySelector(".user").textContent = item.user ? `by ${item.user}` : "";
      this.gateRow(row, item, index);
      row.querySelector(".pick").setAttribute("aria-label", `Select item ${index + 1}, ${itemName(item)}`);
      return row;
    });
    this.list.replaceChildren(...rows);
    this.selection.changed();
    byId("queue-empty").hidden = this.items.length > 0;
    if (focus) this.restoreFocus(focus);
  }

  restoreFocus({ uid, action }) {
    const row = [...this.list.children].find((each) => each.dataset.uid === uid);
    if (!row) return;
    let target = action === "pick" ? row.querySelector(".pick") : row.querySelector(`[data-row="${action}"]`);
    if (target?.disabled) target = row.querySelector(".pick");
    (target || row).focus();
  }
}
