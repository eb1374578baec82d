// The lock of RE Manager: lock the environment and/or the queue with a key and a note, unlock
// with the key, and see who holds the lock. While the key field is filled in, every change the
// page sends carries the key (state.js withLockKey).

import { command } from "./api.js";
import { gate } from "./access.js";
import { byId, formatTime } from "./dom.js";
import { page, report } from "./state.js";

export function lockHolder(info) {
  const locked = ["environment", "queue"].filter((part) => info?.[part]);
  if (!locked.length) return "RE Manager is not locked.";
  const who = info.user ? ` by ${info.user}` : "";
  const when = info.time ? ` since ${formatTime(info.time)}` : "";
  const note = info.note ? `: ${info.note}` : "";
  return `The ${locked.join(" and ")} ${locked.length > 1 ? "are" : "is"} locked${who}${when}${note}.`;
}

export class LockForm {
  constructor({ onDone }) {
    this.form = byId("lock-form");
    this.key = byId("lock-key");
    this.message = byId("lock-message");
    this.onDone = onDone;
    for (const event of ["input", "change"]) {
      this.key.addEventListener(event, () => {
        page.lockKey = this.key.value;
      });
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.lock();
    });
    byId("unlock").addEventListener("click", () => this.unlock());
  }

  reset() {
    this.key.value = page.lockKey = "";
    this.setInfo(null);
  }

  applyScopes() {
    const denied = byId("controls-denied");
    for (const id of ["lock-submit", "unlock", "lock-note", "lock-environment", "lock-queue"]) {
      const control = byId(id);
      control.disabled = false;
      gate(control, "write:lock", denied);
    }
  }

  setInfo(info) {
    byId("lock-holder").textContent = info ? lockHolder(info) : "";
  }

  async send(path, body, success) {
    if (!this.key.value) {
      report(this.message, new Error("Enter the lock key first."));
      this.key.focus();
      return;
    }
    try {
      await command(path, { ...body, lock_key: this.key.value });
      report(this.message, null, success);
    } catch (error) {
      report(this.message, error);
    }
    this.onDone();
  }

  lock() {
    const environment = byId("lock-environment").checked;
    const queue = byId("lock-queue").checked;
    if (!environment && !queue) {
      report(this.message, new Error("Choose the environment, the queue or both."));
      return;
    }
    const note = byId("lock-note").value.trim() || undefined;
    return this.send("lock", { environment, queue, note }, "Locked.");
  }

  unlock() {
    return this.send("unlock", {}, "Unlocked.");
  }
}
