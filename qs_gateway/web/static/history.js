// The History panel: finished items, newest first, with their exit status, times and message;
// filtered by plan name, user or exit status; full parameters and result (traceback included)
// on demand; selected items copied back to the queue as one batch; exported; cleared.

import { command, getVersion } from "./api.js";
import { clearReasons, gate } from "./access.js";
import { byId, confirmAction, describeParameters, el, formatDuration, formatTime } from "./dom.js";
import { download } from "./historyexport.js";
import { reusable } from "./queueedit.js";
import { Selection } from "./selection.js";
import { report, withLockKey } from "./state.js";

const STATUS_CLASS = { completed: "ok", failed: "bad", aborted: "bad", halted: "bad", stopped: "warn", unknown: "warn" };
const COLUMNS = 10;

function exitStatus(item) {
  return item.result?.exit_status || "unknown";
}

/** Everything RE Manager reports about a finished item, as a person reads it. */
function details(item) {
  const { result = {}, ...rest } = item;
  const { traceback, ...summary } = result;
  return el("div", { className: "item-details" },
    el("h4", { text: "Item" }), el("pre", { text: JSON.stringify(rest, null, 2) }),
    el("h4", { text: "Result" }), el("pre", { text: JSON.stringify(summary, null, 2) }),
    traceback ? el("h4", { text: "Traceback" }) : null, traceback ? el("pre", { text: traceback }) : null);
}

export class HistoryView {
  constructor({ onNewItems }) {
    this.body = byId("history-body");
    this.message = byId("queue-message");
    this.status = byId("history-shown");
    this.denied = byId("history-denied");
    this.clearButton = byId("history-clear");
    this.copyButton = byId("history-copy");
    this.onNewItems = onNewItems;
    this.items = [];
    this.etag = null;
    this.historyUid = null;
    this.known = null; // uids seen so far, to tell which items are new
    this.expanded = new Set();
    this.selection = new Selection(this.body, () => [...this.body.querySelectorAll("tr[data-uid]")], () =>
      this.gate(),
    );
    this.clearButton.addEventListener("click", () => this.clear());
    this.copyButton.addEventListener("click", () => this.copySelected());
    byId("history-export").addEventListener("click", () => download(this.items, byId("export-format").value));
    // "change" comes as the focus leaves a field: drawn again then, the rows would be gone before
    // the click that moved the focus ends
    for (const event of ["input", "change"]) byId("history-filter").addEventListener(event, () => this.filtered());
    byId("history-filter").addEventListener("submit", (event) => event.preventDefault());
    this.body.addEventListener("click", (event) => this.toggleDetails(event));
  }

  reset() {
    this.items = [];
    this.etag = this.historyUid = this.known = null;
    this.expanded.clear();
    this.body.replaceChildren();
    clearReasons(this.denied);
  }

  gate() {
    this.copyButton.disabled = false;
    if (gate(this.copyButton, "write:queue:edit", this.denied)) {
      this.copyButton.disabled = this.selection.selected().length === 0;
    }
    this.clearButton.disabled = false;
    if (gate(this.clearButton, "write:history:edit", this.denied)) this.clearButton.disabled = !this.items.length;
  }

  onStatus(status) {
    this.gate();
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

  filter() {
    return {
      name: byId("filter-name").value.trim().toLowerCase(),
      user: byId("filter-user").value.trim().toLowerCase(),
      exit: byId("filter-exit").value,
    };
  }

  filtered() {
    if (JSON.stringify(this.filter()) !== this.shownFilter) this.render(this.items);
  }

  matches(item, { name, user, exit }) {
    return (
      (!name || item.name.toLowerCase().includes(name)) &&
      (!user || (item.user || "").toLowerCase().includes(user)) &&
      (!exit || exitStatus(item) === exit)
    );
  }

  row(item, index) {
    const result = item.result || {};
    const exit = exitStatus(item);
    const { time_start: started, time_stop: stopped } = result;
    const nameId = `history-item-${item.item_uid}`;
    const open = this.expanded.has(item.item_uid);
    const label = `Select history item ${index + 1}, ${item.name}`;
    const rows = [
      el("tr", { "data-uid": item.item_uid },
        el("td", {}, el("input", { type: "checkbox", className: "pick", "aria-label": label })),
        el("td", { text: String(index + 1), "data-label": "#" }),
        el("td", { id: nameId, text: item.name, "data-label": "Plan" }),
        el("td", { className: "params", text: describeParameters(item), "data-label": "Parameters" }),
        el("td", { "data-label": "Status" }, el("span", { className: `exit ${STATUS_CLASS[exit] || "warn"}`, text: exit })),
        el("td", { text: formatTime(started), "data-label": "Started" }),
        el("td", { text: formatTime(stopped), "data-label": "Finished" }),
        el("td", { text: typeof started === "number" && typeof stopped === "number" ? formatDuration(stopped - started) : "",
          "data-label": "Duration" }),
        el("td", { className: "msg", text: result.msg || "", "data-label": "Message" }),
        el("td", {}, el("button", { type: "button", "data-details": item.item_uid, "aria-expanded": String(open),
          "aria-controls": `${nameId}-details`, "aria-describedby": nameId, text: "Details" }))),
    ];
    if (open) rows.push(el("tr", { id: `${nameId}-details`, className: "details-row" },
      el("td", { colSpan: COLUMNS }, details(item))));
    return rows;
  }

  render(items) {
    const fresh = this.known ? items.filter((item) => !this.known.has(item.item_uid)) : [];
    this.known = new Set(items.map((item) => item.item_uid));
    this.items = items;
    const focused = document.activeElement?.dataset?.details;
    const filter = this.filter();
    this.shownFilter = JSON.stringify(filter);
    const shown = items.map((item, index) => [item, index]).filter(([item]) => this.matches(item, filter)).reverse();
    this.body.replaceChildren(...shown.flatMap(([item, index]) => this.row(item, index)));
    this.selection.changed();
    if (focused) this.body.querySelector(`[data-details="${focused}"]`)?.focus();
    byId("history-empty").hidden = items.length > 0;
    this.status.textContent = shown.length === items.length ? "" : `${shown.length} of ${items.length} items shown`;
    this.gate();
    if (fresh.length) this.onNewItems(fresh);
  }

  toggleDetails(event) {
    const uid = event.target.closest("button[data-details]")?.dataset.details;
    if (!uid) return;
    if (this.expanded.has(uid)) this.expanded.delete(uid);
    else this.expanded.add(uid);
    this.render(this.items);
  }

  async copySelected() {
    const uids = this.selection.selected();
    // oldest first, as they ran
    const items = this.items.filter((item) => uids.includes(item.item_uid)).map(reusable);
    if (!items.length) return;
    try {
      await command("queue/item/add/batch", withLockKey({ items }));
      report(this.message, null, `${items.length} item${items.length === 1 ? " was" : "s were"} copied to the queue.`);
      this.selection.clear();
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
