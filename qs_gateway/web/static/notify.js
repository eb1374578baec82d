// Optional desktop notifications: when an item finishes and when the queue stops.

import { byId } from "./dom.js";

const ITEM = "qs-gateway.notifications";

export class Notifier {
  constructor() {
    this.toggle = byId("notify-toggle");
    this.lastState = null;
    const supported = "Notification" in window;
    this.toggle.closest("label").hidden = !supported;
    this.toggle.checked = supported && Notification.permission === "granted" && localStorage.getItem(ITEM) === "on";
    this.toggle.addEventListener("change", () => this.changed());
  }

  async changed() {
    if (this.toggle.checked && Notification.permission !== "granted") {
      this.toggle.checked = (await Notification.requestPermission()) === "granted";
    }
    localStorage.setItem(ITEM, this.toggle.checked ? "on" : "off");
  }

  tell(title, body) {
    if (this.toggle.checked && Notification.permission === "granted") new Notification(title, { body });
  }

  itemsFinished(items) {
    for (const item of items) this.tell(`${item.name}: ${item.result?.exit_status ?? "finished"}`, item.result?.msg || "");
  }

  onStatus(status) {
    const running = status.manager_state === "executing_queue";
    if (this.lastState === "executing_queue" && !running && status.manager_state !== "paused") {
      this.tell("The queue stopped", `${status.items_in_queue} item(s) left in the queue`);
    }
    this.lastState = status.manager_state;
  }
}
