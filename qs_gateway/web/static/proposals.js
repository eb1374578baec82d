// The Proposals panel: items scripts and agents submitted for review (/api/queue/submission/*),
// each with Approve (the item goes to the back of the queue) and Deny (with a reason). A
// reviewer's page asks for the pending ones every few seconds; anyone else's when it opens and
// on "Refresh proposals", so a page that only watches adds no load.

import { command, get } from "./api.js";
import { clearReasons, gate } from "./access.js";
import { byId, describeParameters, el, formatTime } from "./dom.js";
import { allowed, report, withLockKey } from "./state.js";

const APPROVE = "write:queue:approve";
const POLL_MS = 5000;

export class ProposalsView {
  constructor({ onDecided }) {
    this.list = byId("proposal-list");
    this.message = byId("proposals-message");
    this.denied = byId("proposals-denied");
    this.onDecided = onDecided;
    this.version = null;
    this.timer = null;
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-decide]");
      if (button) this.decide(button.dataset.decide, button.dataset.uid, button.dataset.name);
    });
    byId("proposals-refresh").addEventListener("click", () => this.refresh(true));
  }

  start() {
    this.stop();
    this.version = null;
    clearReasons(this.denied);
    this.refresh();
    if (allowed(APPROVE)) this.timer = setInterval(() => this.refresh(), POLL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh(announce = false) {
    try {
      const answer = await get("queue/submission/get", { state: "pending" });
      if (announce) report(this.message, null, `${answer.total} pending.`);
      if (answer.version === this.version) return;
      this.version = answer.version;
      this.render(answer.submissions || []);
    } catch (error) {
      report(this.message, error);
    }
  }

  row(submission) {
    const item = submission.item || {};
    const nameId = `proposal-${submission.uid}`;
    const who = submission.username || submission.user || "unknown";
    const buttons = ["Approve", "Deny"].map((label) => {
      const button = el("button", { type: "button", text: label, "data-decide": label.toLowerCase(),
        "data-uid": submission.uid, "data-name": item.name ?? "item", className: label === "Deny" ? "danger" : "" });
      gate(button, APPROVE, this.denied, nameId);
      return button;
    });
    return el("li", { "data-uid": submission.uid },
      el("span", { className: "item-main" },
        el("strong", { id: nameId, text: item.name ?? "(no name)" }), " ",
        el("span", { className: "params", text: describeParameters(item) })),
      el("span", { className: "user", text: `by ${who}, ${formatTime(submission.time_submitted)}` }),
      submission.note ? el("span", { className: "hint", text: `“${submission.note}”` }) : null,
      el("span", { className: "row-actions" }, buttons));
  }

  render(submissions) {
    this.list.replaceChildren(...submissions.map((submission) => this.row(submission)));
    byId("proposals-empty").hidden = submissions.length > 0;
  }

  async decide(decision, uid, name) {
    const body = decision === "approve" ? withLockKey({ uid }) : { uid, reason: byId("deny-reason").value.trim() };
    try {
      await command(`queue/submission/${decision}`, body);
      report(this.message, null, `${decision === "approve" ? "Approved" : "Denied"} ${name}.`);
      this.onDecided();
    } catch (error) {
      report(this.message, error);
    }
    this.version = null;
    await this.refresh();
  }
}
