// The History panel: finished items, newest first, with their exit status, times and message;
// an item can be copied back to the queue; the history can be cleared.

import { command, getVersion } from "./api.js";
import { byId, confirmAction, describeParameters, el, formatDuration, formatTime } from "./dom.js";
import { allowed, report, withLockKey } from "./state.js";
import { reusable } from "./queue.js";

const STATUS_CLASS = { completed: "ok", failed: "bad", aborted: "bad", halted: "bad", stopped: "warn", unknown: "warn" };

export class HistoryView {
  constructor({ onNewItems }) {
    this.body = byId("history-body");
    this.message = byId("queue-message");
    this.clearButton = byId("history-clear");
    this.onNewItems = onNewItems;
    this.items = [];
    this.etag = null;
    this.historyUid = null;
    this.known = null; // uids seen so far, to tell which items are new
    this.clearButton.addEventListener("click", () => this.clear());
    this.body.addEventListener("click", (event) => this.clicked(event));
  }

  reset() {
    this.items = [];
    this.etag = this.historyUid = this.known = null;
    this.body.replaceChildren();
  }

  onStatus(status) {
    this.clearButton.hidden = !allowed("write:history:edit");
    this.clearButton.disabled = !status.items_in_history;
    if (status.plan_history_uid !== this.historyUid) {
      this.historyUid = status.plan_history_uid;
      this.refresh(this.historyUid);
    }
  }

  async refresh(wanted = null) {
    try {
      const answer = await getVersion("history/get", "plan_history_uid", wanted, this.etag);
      if (answer.notModified) return;
      this.etag = answer.etag;
      this.render(answer.data.items || []);
    } catch (error) {
      report(this.message, error);
    }
  }

  render(items) {
    const fresh = this.known ? items.filter((item) => !this.known.has(item.item_uid)) : [];
    this.known = new Set(items.map((item) => item.item_uid));
    this.items = items;
    const copyAllowed = allowed("write:queue:edit");
    const rows = items.map((item, index) => {
      const result = item.result || {};
      const exit = result.exit_status || "unknown";
      const started = result.time_start;
      const stopped = result.time_stop;
      const copy = el("button", { type: "button", "data-uid": item.item_uid, text: "Copy to queue", hidden: !copyAllowed });
      return el("tr", { "data-uid": item.item_uid },
        el("td", { text: String(index + 1) }),
        el("td", { text: item.name }),
        el("td", { className: "params", text: describeParameters(item) }),
        el("td", {}, el("span", { className: `exit ${STATUS_CLASS[exit] || "warn"}`, text: exit })),
        el("td", { text: formatTime(started) }),
        el("td", { text: formatTime(stopped) }),
        el("td", { text: typeof started === "number" && typeof stopped === "number" ? formatDuration(stopped - started) : "" }),
        el("td", { className: "msg", text: result.msg || "", title: result.traceback || null }),
        el("td", {}, copy));
    }).reverse();
    this.body.replaceChildren(...rows);
    byId("history-empty").hidden = items.length > 0;
    if (fresh.length) this.onNewItems(fresh);
  }

  async clicked(event) {
    const button = event.target.closest("button[data-uid]");
    const item = button && this.items.find((each) => each.item_uid === button.dataset.uid);
    if (!item) return;
    try {
      await command("queue/item/add", withLockKey({ item: reusable(item) }));
      report(this.message, null, `${item.name} was copied to the queue.`);
    } catch (error) {
      report(this.message, error);
    }
  }

  async clear() {
    if (!(await confirmAction("Clear the whole history? This cannot be undone.", "Clear history"))) return;
    try {
      await command("history/clear", withLockKey());
      report(this.message, null, "The history was cleared.");
    } catch (error) {
      report(this.message, error);
    }
  }
}
