// The Controls panel: each control shown only to a person whose scopes allow it, enabled only
// while RE Manager's state allows it; a lock key field while the queue or environment is locked.

import { command } from "./api.js";
import { byId, confirmAction } from "./dom.js";
import { allowed, page, report, withLockKey } from "./state.js";

const idle = (s) => s.manager_state === "idle";
const executing = (s) => s.manager_state === "executing_queue";
const paused = (s) => s.manager_state === "paused";
const environment = (s) => Boolean(s.worker_environment_exists);

const ACTIONS = {
  "environment-open": {
    path: "environment/open", scope: "write:manager:control", enabled: (s) => idle(s) && !environment(s),
  },
  "environment-close": {
    path: "environment/close", scope: "write:manager:control", enabled: (s) => idle(s) && environment(s),
  },
  "environment-destroy": {
    path: "environment/destroy", scope: "write:manager:control", enabled: environment,
    confirm: "Destroy the worker environment? A running plan is killed at once.",
  },
  "queue-start": {
    path: "queue/start", scope: "write:queue:control", enabled: (s) => idle(s) && environment(s) && s.items_in_queue > 0,
  },
  "queue-stop": {
    path: "queue/stop", scope: "write:queue:control", enabled: (s) => executing(s) && !s.queue_stop_pending,
  },
  "queue-stop-cancel": {
    path: "queue/stop/cancel", scope: "write:queue:control", enabled: (s) => Boolean(s.queue_stop_pending),
  },
  "queue-autostart": {
    path: "queue/autostart", scope: "write:queue:control", enabled: () => true,
    body: () => ({ enable: byId("autostart").checked }),
  },
  "re-pause": {
    path: "re/pause", scope: "write:plan:control", enabled: executing, body: () => ({ option: "deferred" }),
  },
  "re-pause-immediate": {
    path: "re/pause", scope: "write:plan:control", enabled: executing, body: () => ({ option: "immediate" }),
  },
  "re-resume": { path: "re/resume", scope: "write:plan:control", enabled: paused },
  "re-stop": { path: "re/stop", scope: "write:plan:control", enabled: paused },
  "re-abort": { path: "re/abort", scope: "write:plan:control", enabled: paused },
  "re-halt": {
    path: "re/halt", scope: "write:plan:control", enabled: paused,
    confirm: "Halt the Run Engine? The plan ends at once, without its cleanup.",
  },
};

const WRITE_SCOPES = ["write:manager:control", "write:queue:control", "write:plan:control", "write:queue:edit"];

export class Controls {
  constructor({ onDone }) {
    this.panel = byId("controls");
    this.message = byId("controls-message");
    this.lockField = byId("lock-key-field");
    this.autostart = byId("autostart");
    this.onDone = onDone;
    this.reachable = true;
    this.pending = new Set();
    this.panel.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) this.run(button.dataset.action);
    });
    this.autostart.addEventListener("change", () => this.run("queue-autostart"));
    this.lockField.addEventListener("submit", (event) => event.preventDefault());
    byId("lock-key").addEventListener("input", (event) => {
      page.lockKey = event.target.value;
    });
  }

  elements() {
    return this.panel.querySelectorAll("[data-action]");
  }

  /** Show the controls the scopes allow; hide the whole panel if none. */
  applyScopes() {
    let any = false;
    for (const element of this.elements()) {
      const visible = allowed(ACTIONS[element.dataset.action].scope);
      element.hidden = !visible;
      any ||= visible;
    }
    for (const group of this.panel.querySelectorAll('[role="group"]')) {
      group.hidden = ![...group.querySelectorAll("[data-action]")].some((element) => !element.hidden);
    }
    this.panel.hidden = !any;
  }

  setReachable(reachable) {
    this.reachable = reachable;
    if (page.status) this.update(page.status);
  }

  update(status) {
    for (const element of this.elements()) {
      const action = element.dataset.action;
      const control = element.tagName === "LABEL" ? this.autostart : element;
      control.disabled = !this.reachable || this.pending.has(action) || !ACTIONS[action].enabled(status);
    }
    if (!this.pending.has("queue-autostart")) this.autostart.checked = Boolean(status.queue_autostart_enabled);
    const locked = Boolean(status.lock?.environment || status.lock?.queue);
    this.lockField.hidden = !locked || !WRITE_SCOPES.some(allowed);
  }

  async run(name) {
    const action = ACTIONS[name];
    if (action.confirm && !(await confirmAction(action.confirm))) return;
    this.pending.add(name);
    if (page.status) this.update(page.status);
    try {
      await command(action.path, withLockKey(action.body ? action.body() : {}));
      report(this.message, null, "");
    } catch (error) {
      report(this.message, error);
    } finally {
      this.pending.delete(name);
      if (page.status) this.update(page.status);
      this.onDone();
    }
  }
}
