// The Controls panel: each control enabled while RE Manager's state and the person's scopes
// allow it (a control the scopes forbid is disabled, with the reason beside it).

import { command } from "./api.js";
import { clearReasons, gate } from "./access.js";
import { byId, confirmAction } from "./dom.js";
import { page, report, withLockKey } from "./state.js";

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
  "environment-update": {
    path: "environment/update", scope: "write:queue:control", enabled: (s) => idle(s) && environment(s),
  },
  "kernel-interrupt": {
    path: "kernel/interrupt", scope: "write:queue:control", enabled: environment,
    confirm: "Interrupt the kernel of the worker environment (as Ctrl+C would)?",
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
  "queue-loop": {
    path: "queue/mode/set", scope: "write:queue:control", enabled: () => true,
    body: () => ({ mode: { loop: byId("loop-mode").checked } }),
  },
  "queue-ignore-failures": {
    path: "queue/mode/set", scope: "write:queue:control", enabled: () => true,
    body: () => ({ mode: { ignore_failures: byId("ignore-failures").checked } }),
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

// The check boxes of the panel, by action, and the status field each shows.
const TOGGLES = {
  "queue-autostart": { id: "autostart", shows: (s) => s.queue_autostart_enabled },
  "queue-loop": { id: "loop-mode", shows: (s) => s.plan_queue_mode?.loop },
  "queue-ignore-failures": { id: "ignore-failures", shows: (s) => s.plan_queue_mode?.ignore_failures },
};

export class Controls {
  constructor({ onDone }) {
    this.panel = byId("controls");
    this.message = byId("controls-message");
    this.denied = byId("controls-denied");
    this.onDone = onDone;
    this.reachable = true;
    this.pending = new Set();
    this.panel.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) this.run(button.dataset.action);
    });
    for (const [action, toggle] of Object.entries(TOGGLES)) {
      byId(toggle.id).addEventListener("change", () => this.run(action));
    }
  }

  control(element) {
    return element.tagName === "LABEL" ? byId(TOGGLES[element.dataset.action].id) : element;
  }

  elements() {
    return this.panel.querySelectorAll("[data-action]");
  }

  /** A new sign-in: the reasons of the last one go. */
  applyScopes() {
    clearReasons(this.denied);
    if (page.status) this.update(page.status);
  }

  setReachable(reachable) {
    this.reachable = reachable;
    if (page.status) this.update(page.status);
  }

  update(status) {
    for (const element of this.elements()) {
      const action = element.dataset.action;
      const control = this.control(element);
      control.disabled = false;
      if (gate(control, ACTIONS[action].scope, this.denied)) {
        control.disabled = !this.reachable || this.pending.has(action) || !ACTIONS[action].enabled(status);
      }
    }
    for (const [action, toggle] of Object.entries(TOGGLES)) {
      if (!this.pending.has(action)) byId(toggle.id).checked = Boolean(toggle.shows(status));
    }
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
