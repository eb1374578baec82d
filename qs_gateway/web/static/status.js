// RE Manager's status, live: Server-Sent Events from /api/status/events, or polling /api/status
// with If-None-Match (a 304 costs nothing) where streams are refused. And the Status panel.

import { ApiError, request } from "./api.js";
import { byId, el } from "./dom.js";
import { EventStream } from "./sse.js";

const POLL_BUSY_MS = 1000;
const POLL_IDLE_MS = 2000; // an idle page: with the console polled every 3 s, under one request a second
const QUIET_MS = 5000; // RE Manager publishes its status every second: silence means trouble
// After a refusal the page polls, and tries the stream again: soon (a worker restarting), then
// less and less often (a gateway at its stream limit).
const STREAM_RETRY_MS = [3000, 30000, 60000];
const POLL_HIDDEN_MS = 5000; // a tab in the background: no stream, a cheap conditional request

export class StatusFeed {
  /** onStatus(status) for every status; onReachable(bool, reason) when that changes. */
  constructor({ onStatus, onReachable }) {
    this.onStatus = onStatus;
    this.onReachable = onReachable;
    this.etag = null;
    this.stream = null;
    this.timer = null;
    this.stopped = false;
    this.refusals = 0;
    this.busy = false;
    this.suspended = false;
  }

  async start() {
    await this.fetch();
    this.openStream();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.stream) this.stream.stop();
  }

  /** The tab is hidden: give up the stream (browsers allow a few connections per server, for
   * all tabs together) and poll slowly, so notifications still come. */
  suspend() {
    this.suspended = true;
    if (this.stream) this.stream.stop();
    this.stream = null;
    this.poll();
  }

  async resume() {
    this.suspended = false;
    clearTimeout(this.timer);
    await this.fetch();
    this.openStream();
  }

  openStream() {
    if (this.stopped || this.suspended) return;
    this.stream = new EventStream("status/events", {
      onOpen: () => {
        this.refusals = 0;
      },
      onMessage: (data) => {
        const status = JSON.parse(data);
        if (status && typeof status === "object") this.deliver(status);
      },
      onUnavailable: () => {
        this.stream = null;
        this.poll();
        const delay = STREAM_RETRY_MS[Math.min(this.refusals++, STREAM_RETRY_MS.length - 1)];
        setTimeout(() => this.retryStream(), delay);
      },
    }).start();
    this.watch();
  }

  retryStream() {
    if (this.stopped || this.stream || this.suspended) return;
    clearTimeout(this.timer);
    this.openStream();
  }

  // While streaming, a silent stream gets one plain request: is RE Manager there at all?
  watch() {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      if (this.stopped || !this.stream) return;
      await this.fetch();
      this.watch();
    }, QUIET_MS);
  }

  poll() {
    clearTimeout(this.timer);
    if (this.stopped || this.stream) return;
    this.timer = setTimeout(async () => {
      await this.fetch();
      this.poll();
    }, this.suspended ? POLL_HIDDEN_MS : this.busy ? POLL_BUSY_MS : POLL_IDLE_MS);
  }

  deliver(status) {
    this.busy = status.manager_state !== "idle";
    this.onReachable(true);
    this.onStatus(status);
    if (this.stream) this.watch();
  }

  async fetch() {
    try {
      const answer = await request("GET", "status", { etag: this.etag });
      this.etag = answer.etag || this.etag;
      if (!answer.notModified) this.deliver(answer.data);
      else this.onReachable(true);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 0) this.onReachable(false, "The gateway does not answer");
      else if (error.status === 408 || error.status === 503) this.onReachable(false, "RE Manager does not answer");
      else if (error.status !== 401) this.onReachable(false, error.message);
    }
  }
}

function queueState(status) {
  const running = ["executing_queue", "starting_queue"].includes(status.manager_state);
  let text = running ? "running" : "stopped";
  if (status.queue_stop_pending) text += " (stop pending)";
  return text;
}

function lockText(status, lockInfo) {
  const locked = [];
  if (status.lock?.environment) locked.push("environment");
  if (status.lock?.queue) locked.push("queue");
  if (!locked.length) return "not locked";
  const who = lockInfo?.user ? ` by ${lockInfo.user}` : "";
  const note = lockInfo?.note ? ` (${lockInfo.note})` : "";
  return `${locked.join(" and ")} locked${who}${note}`;
}

const yesNo = (value) => (value ? "on" : "off");

export class StatusView {
  constructor() {
    this.list = byId("status-list");
    this.cells = new Map();
    this.reachable = true;
    this.reason = "";
    this.status = null;
    this.lockInfo = null;
  }

  setReachable(reachable, reason = "") {
    this.reachable = reachable;
    this.reason = reason;
    this.render();
  }

  setLockInfo(lockInfo) {
    this.lockInfo = lockInfo;
    this.render();
  }

  update(status) {
    this.status = status;
    this.render();
  }

  render() {
    const status = this.status;
    const rows = [["RE Manager", this.reachable ? "reachable" : `not reachable${this.reason ? ` — ${this.reason}` : ""}`]];
    if (status) {
      rows.push(
        ["Manager state", status.manager_state ?? "unknown"],
        ["Environment", status.worker_environment_exists ? (status.worker_environment_state || "open") : "closed"],
        ["RE state", status.re_state ?? "—"],
        ["Queue", queueState(status)],
        ["Autostart", yesNo(status.queue_autostart_enabled)],
        ["Loop mode", yesNo(status.plan_queue_mode?.loop)],
        ["Ignore failures", yesNo(status.plan_queue_mode?.ignore_failures)],
        ["Lock", lockText(status, this.lockInfo)],
        ["Items in queue", String(status.items_in_queue ?? 0)],
        ["Items in history", String(status.items_in_history ?? 0)],
      );
    }
    // Updated in place: a value that did not change is not announced or redrawn.
    for (const [name, value] of rows) {
      let cell = this.cells.get(name);
      if (!cell) {
        cell = el("dd");
        this.cells.set(name, cell);
        this.list.append(el("dt", { text: name }), cell);
      }
      if (cell.textContent !== value) cell.textContent = value;
      cell.classList.toggle("warn", !this.reachable);
    }
  }
}
