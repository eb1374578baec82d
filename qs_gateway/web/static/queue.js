// The Queue panel: the running item with its runs, and the queued items, which can be
// reordered (drag and drop, "Move up"/"Move down", Alt+arrow keys), edited, duplicated and removed.

import { command, get, getVersion, post } from "./api.js";
import { byId, describeParameters, el, fromTemplate } from "./dom.js";
import { allowed, report, withLockKey } from "./state.js";

function itemName(item) {
  return item.item_type === "instruction" ? `instruction: ${item.name}` : item.name;
}

/** An item as it can be sent again: without its uid, result and owner. */
export function reusable(item) {
  const copy = { item_type: item.item_type, name: item.name };
  if (item.args?.length) copy.args = item.args;
  if (item.kwargs && Object.keys(item.kwargs).length) copy.kwargs = item.kwargs;
  if (item.meta && Object.keys(item.meta).length) copy.meta = item.meta;
  return copy;
}

export class QueueView {
  constructor({ onEdit }) {
    this.list = byId("queue-list");
    this.message = byId("queue-message");
    this.onEdit = onEdit;
    this.items = [];
    this.etag = null;
    this.queueUid = null;
    this.runListUid = null;
    this.focusAfterRender = null;
    this.list.addEventListener("click", (event) => this.clicked(event));
    this.list.addEventListener("keydown", (event) => this.keyed(event));
    this.list.addEventListener("pointerdown", (event) => this.dragStart(event));
  }

  reset() {
    this.items = [];
    this.etag = this.queueUid = this.runListUid = null;
    this.list.replaceChildren();
  }

  /** Fetch the queue again only when RE Manager says it changed. */
  onStatus(status) {
    if (status.plan_queue_uid !== this.queueUid) {
      this.queueUid = status.plan_queue_uid;
      this.refresh(this.queueUid);
    }
    if (status.run_list_uid !== this.runListUid && allowed("read:monitor")) {
      this.runListUid = status.run_list_uid;
      this.refreshRuns();
    }
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

  async refreshRuns() {
    try {
      // re/runs/active takes no reload; re/runs (POST, a read) does
      let answer = await get("re/runs/active");
      if (answer.run_list_uid !== this.runListUid) answer = await post("re/runs", { option: "active", reload: true });
      this.renderRuns(answer.run_list || []);
    } catch (error) {
      report(this.message, error);
    }
  }

  render(data) {
    // The rows are built anew: the focus stays on the same button of the same item.
    const active = document.activeElement;
    const activeRow = this.list.contains(active) ? active.closest("li[data-uid]") : null;
    const focus = this.focusAfterRender || (activeRow && { uid: activeRow.dataset.uid, action: active.dataset.row });
    this.focusAfterRender = null;
    this.items = data.items || [];
    const running = data.running_item || {};
    const isRunning = Boolean(running.item_uid);
    byId("running-empty").hidden = isRunning;
    byId("running-item").hidden = !isRunning;
    if (isRunning) {
      byId("running-name").textContent = itemName(running);
      byId("running-params").textContent = describeParameters(running);
      byId("running-user").textContent = running.user ? `by ${running.user}` : "";
    }
    const editable = allowed("write:queue:edit");
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
      row.querySelector(".row-actions").hidden = !editable;
      row.querySelector(".handle").hidden = !editable;
      for (const button of row.querySelectorAll("button")) button.setAttribute("aria-describedby", name.id);
      row.querySelector('[data-row="up"]').disabled = index === 0;
      row.querySelector('[data-row="down"]').disabled = index === this.items.length - 1;
      row.querySelector('[data-row="edit"]').disabled = item.item_type !== "plan";
      return row;
    });
    this.list.replaceChildren(...rows);
    byId("queue-empty").hidden = this.items.length > 0;
    if (focus) {
      const { uid, action } = focus;
      const row = this.rowOf(uid);
      let target = row?.querySelector(`[data-row="${action}"]`);
      if (target?.disabled) target = row.querySelector('[data-row="edit"]');
      (target || row)?.focus();
    }
  }

  renderRuns(runs) {
    byId("running-runs").replaceChildren(
      ...runs.map((run) =>
        el("li", { text: `run ${run.uid.slice(0, 8)} — ${run.is_open ? "open" : run.exit_status || "closed"}` }),
      ),
    );
  }

  rowOf(uid) {
    return [...this.list.children].find((row) => row.dataset.uid === uid);
  }

  indexOf(uid) {
    return this.items.findIndex((item) => item.item_uid === uid);
  }

  async act(work, success, focus = null) {
    try {
      await work();
      this.focusAfterRender = focus;
      report(this.message, null, success);
      await this.refresh();
    } catch (error) {
      report(this.message, error);
    }
  }

  /** Move the item `uid` to just before or after the item `target`. */
  move(uid, where, target, focusAction = null) {
    if (!target || target === uid) return;
    const body = { uid, [where === "before" ? "before_uid" : "after_uid"]: target };
    const name = this.items[this.indexOf(uid)]?.name ?? "item";
    return this.act(() => command("queue/item/move", withLockKey(body)), `Moved ${name}.`, { uid, action: focusAction });
  }

  step(uid, direction, focusAction) {
    const index = this.indexOf(uid);
    const neighbour = this.items[index + direction];
    if (neighbour) this.move(uid, direction < 0 ? "before" : "after", neighbour.item_uid, focusAction);
  }

  clicked(event) {
    const button = event.target.closest("button[data-row]");
    if (!button) return;
    const uid = button.closest("li").dataset.uid;
    const item = this.items[this.indexOf(uid)];
    if (!item) return;
    switch (button.dataset.row) {
      case "up":
        return this.step(uid, -1, "up");
      case "down":
        return this.step(uid, +1, "down");
      case "edit":
        return this.onEdit(item);
      case "duplicate":
        return this.act(
          () => command("queue/item/add", withLockKey({ item: reusable(item), after_uid: uid })),
          `Duplicated ${item.name}.`,
        );
      case "remove":
        return this.act(() => command("queue/item/remove", withLockKey({ uid })), `Removed ${item.name}.`);
    }
  }

  keyed(event) {
    if (!event.altKey || !["ArrowUp", "ArrowDown"].includes(event.key)) return;
    const row = event.target.closest("li[data-uid]");
    if (!row || !allowed("write:queue:edit")) return;
    event.preventDefault();
    const up = event.key === "ArrowUp";
    this.step(row.dataset.uid, up ? -1 : +1, up ? "up" : "down");
  }

  // Dragging by the handle, with pointer events (mouse, pen and touch alike).
  dragStart(event) {
    const handle = event.target.closest(".handle");
    if (!handle || event.button !== 0) return;
    const row = handle.closest("li[data-uid]");
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    row.classList.add("dragging");
    let drop = null;
    const clearMarks = () => {
      for (const other of this.list.children) other.classList.remove("drop-before", "drop-after");
    };
    const moved = (move) => {
      clearMarks();
      drop = null;
      for (const other of this.list.children) {
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
      if (drop && !cancelled) this.move(row.dataset.uid, drop.where, drop.target);
    };
    const options = { signal: listening.signal };
    handle.addEventListener("pointermove", moved, options);
    handle.addEventListener("pointerup", () => ended(false), options);
    handle.addEventListener("pointercancel", () => ended(true), options);
  }
}
