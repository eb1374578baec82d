// The running item of the Queue panel: its name, parameters and owner, how long it has been
// running (from RE Manager's start time), and the runs it opened.

import { get, post } from "./api.js";
import { byId, describeParameters, el, formatDuration } from "./dom.js";

export function itemName(item) {
  return item.item_type === "instruction" ? `instruction: ${item.name}` : item.name;
}

export class RunningView {
  constructor({ onError }) {
    this.onError = onError;
    this.uid = null;
    this.started = null;
    this.runListUid = null;
    this.timer = null;
  }

  reset() {
    this.show({});
    this.runListUid = null;
  }

  /** The running item of a queue answer ({} when nothing runs). */
  show(running) {
    const isRunning = Boolean(running.item_uid);
    byId("running-empty").hidden = isRunning;
    byId("running-item").hidden = !isRunning;
    clearInterval(this.timer);
    this.timer = null;
    if (!isRunning) return;
    byId("running-name").textContent = itemName(running);
    byId("running-params").textContent = describeParameters(running);
    byId("running-user").textContent = running.user ? `by ${running.user}` : "";
    if (running.item_uid !== this.uid) this.started = running.properties?.time_start ?? Date.now() / 1000;
    this.uid = running.item_uid;
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000);
  }

  tick() {
    byId("running-elapsed").textContent = formatDuration(Math.max(0, Date.now() / 1000 - this.started));
  }

  async refreshRuns(runListUid) {
    if (runListUid === this.runListUid) return;
    this.runListUid = runListUid;
    try {
      // re/runs/active takes no reload; re/runs (POST, a read) does
      let answer = await get("re/runs/active");
      if (answer.run_list_uid !== runListUid) answer = await post("re/runs", { option: "active", reload: true });
      this.renderRuns(answer.run_list || []);
    } catch (error) {
      this.onError(error);
    }
  }

  renderRuns(runs) {
    byId("running-runs").replaceChildren(
      ...runs.map((run) =>
        el("li", { text: `run ${run.uid.slice(0, 8)} — ${run.is_open ? "open" : run.exit_status || "closed"}` }),
      ),
    );
    byId("runs-empty").hidden = runs.length > 0;
  }
}
