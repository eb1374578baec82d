// RE Manager's console output, as a terminal shows it, live.
//
// The page first reads every kept message (console_output_update with "ALL"), whose cursor is
// the id of the newest one; the event stream then starts right after that id, and resumes
// after the last id it delivered whenever it reconnects: nothing is missed or shown twice.
// Where streams are refused it polls console_output_update with the same cursor.

import { ApiError, get } from "./api.js";
import { byId } from "./dom.js";
import { EventStream } from "./sse.js";

const MAX_LINES = 2000;
const CONTROL = /(\n|\r|\x1b\[A)/;
// Other terminal escape sequences (colours, erasing) are dropped, not shown as garbage.
const OTHER_ESCAPES = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
const POLL_BUSY_MS = 1000;
const POLL_IDLE_MS = 3000; // with the status polled every 2 s: under one request a second
// After a refusal the page polls, and tries the stream again: soon (a worker restarting), then
// less and less often (a gateway at its stream limit).
const STREAM_RETRY_MS = [3000, 30000, 60000];

/** The rules of the gateway's /api/console_output: \n, \r and ESC[A move the cursor. */
export class Terminal {
  constructor(maxLines = MAX_LINES) {
    this.maxLines = maxLines;
    this.lines = [];
    this.line = 0;
    this.column = 0;
  }

  add(message) {
    for (const piece of String(message).split(CONTROL)) {
      if (!piece) continue;
      if (!this.lines.length) this.lines.push("");
      if (piece === "\n") {
        this.line += 1;
        if (this.line >= this.lines.length) this.lines.push("");
        this.column = 0;
      } else if (piece === "\r") {
        this.column = 0;
      } else if (piece === "\x1b[A") {
        this.line = Math.max(0, this.line - 1);
      } else {
        const text = piece.replace(OTHER_ESCAPES, "");
        const current = this.lines[this.line].padEnd(this.column, " ");
        this.lines[this.line] = current.slice(0, this.column) + text + current.slice(this.column + text.length);
        this.column += text.length;
      }
    }
    const trailing = this.lines.length && this.lines[this.lines.length - 1] === "" ? 1 : 0;
    const excess = this.lines.length - trailing - this.maxLines;
    if (excess > 0) {
      this.lines.splice(0, excess);
      this.line = Math.max(0, this.line - excess);
    }
  }

  text() {
    const last = this.lines.length && this.lines[this.lines.length - 1] === "" ? -1 : undefined;
    return this.lines.slice(0, last).join("\n");
  }
}

export class ConsoleView {
  constructor() {
    this.pre = byId("console-text");
    this.followButton = byId("console-follow");
    this.terminal = new Terminal();
    this.following = true;
    this.scheduled = false;
    this.pre.addEventListener("scroll", () => {
      const atBottom = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 8;
      this.following = atBottom;
      this.followButton.hidden = atBottom;
    });
    this.followButton.addEventListener("click", () => this.follow());
  }

  follow() {
    this.following = true;
    this.followButton.hidden = true;
    this.pre.scrollTop = this.pre.scrollHeight;
  }

  clear() {
    this.terminal = new Terminal();
    this.render();
  }

  add(messages) {
    for (const message of messages) this.terminal.add(message.msg ?? "");
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.render());
    }
  }

  render() {
    this.scheduled = false;
    this.pre.textContent = this.terminal.text();
    if (this.following) this.pre.scrollTop = this.pre.scrollHeight;
  }
}

export class ConsoleFeed {
  constructor(view, { isBusy }) {
    this.view = view;
    this.isBusy = isBusy;
    this.cursor = "ALL";
    this.stream = null;
    this.timer = null;
    this.retryTimer = null;
    this.polling = null;
    this.stopped = false;
    this.refusals = 0;
    this.suspended = false;
    this.state = byId("console-state");
  }

  /** The tab is hidden: no stream and no polling; resume() catches up from the cursor. */
  suspend() {
    this.suspended = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    if (this.stream) this.stream.stop();
    this.stream = null;
  }

  resume() {
    this.suspended = false;
    return this.start();
  }

  async start() {
    await this.fetchUpdate();
    this.openStream();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    if (this.stream) this.stream.stop();
  }

  async fetchUpdate() {
    try {
      const answer = await get("console_output_update", { last_msg_uid: this.cursor });
      this.view.add(answer.console_output_msgs || []);
      this.cursor = answer.last_msg_uid;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
  }

  openStream() {
    if (this.stopped || this.suspended) return;
    this.state.textContent = "";
    this.stream = new EventStream("console_output/events", {
      lastEventId: this.cursor === "ALL" ? null : this.cursor,
      onOpen: () => {
        this.refusals = 0;
        this.state.textContent = "";
      },
      onMessage: (data, id) => {
        this.cursor = id;
        this.view.add([JSON.parse(data)]);
      },
      onUnavailable: (status) => {
        this.stream = null;
        this.state.textContent = status === 503 ? "The live stream is busy: checking for new output every second or two." : "";
        this.poll();
        const delay = STREAM_RETRY_MS[Math.min(this.refusals++, STREAM_RETRY_MS.length - 1)];
        this.retryTimer = setTimeout(() => this.retryStream(), delay);
      },
    }).start();
  }

  async retryStream() {
    await this.polling; // a poll on its way would deliver what the stream delivers too
    if (this.stopped || this.stream || this.suspended) return;
    this.openStream();
  }

  poll() {
    clearTimeout(this.timer); // one chain of polls, however often a stream is refused
    if (this.stopped || this.stream || this.suspended) return;
    this.timer = setTimeout(async () => {
      if (this.stopped || this.stream || this.suspended) return;
      this.polling = this.fetchUpdate();
      await this.polling;
      this.poll();
    }, this.isBusy() ? POLL_BUSY_MS : POLL_IDLE_MS);
  }
}
