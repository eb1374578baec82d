// Server-Sent Events read with fetch(), so that the credentials travel in the Authorization
// header (EventSource cannot send headers, and a key in the URL ends up in logs). Like
// EventSource it reconnects by itself and resumes with Last-Event-ID: no message is lost when
// a worker restarts. A refusal (503: the worker's stream limit, or a worker shutting down; 404; no
// streaming) is reported through onUnavailable, and the owner falls back to polling.

import { apiUrl, authorizationHeader, renewCredentials } from "./api.js";

const QUIET_LIMIT_MS = 45000; // the gateway sends a heartbeat every 15 s by default
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class EventStream {
  constructor(path, { lastEventId = null, onMessage, onOpen = () => {}, onUnavailable }) {
    this.path = path;
    this.lastEventId = lastEventId;
    this.onMessage = onMessage;
    this.onOpen = onOpen;
    this.onUnavailable = onUnavailable;
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    let delay = 500;
    let renewed = false;
    while (!this.stopped) {
      this.controller = new AbortController();
      const headers = { Accept: "text/event-stream" };
      const authorization = authorizationHeader();
      if (authorization) headers.Authorization = authorization;
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      let response = null;
      try {
        response = await fetch(apiUrl(this.path), {
          headers, credentials: "omit", cache: "no-store", signal: this.controller.signal,
        });
      } catch {
        response = null;
      }
      if (this.stopped) return;
      if (response === null) {
        await sleep(delay); // the gateway is away (restarting?): try again, a little later each time
        delay = Math.min(delay * 2, 8000);
        continue;
      }
      if (response.status === 401 && !renewed && (await renewCredentials())) {
        renewed = true;
        continue;
      }
      if (!response.ok || !response.body) {
        this.onUnavailable(response.status);
        return;
      }
      renewed = false;
      delay = 500;
      this.onOpen();
      try {
        await this.read(response.body);
      } catch {
        // the connection ended (a worker restarted, the network went away): resume below
      }
      if (!this.stopped) await sleep(200);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = null;
    const quiet = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => this.controller.abort(), QUIET_LIMIT_MS);
    };
    let buffer = "";
    let data = [];
    let id = null;
    try {
      for (;;) {
        quiet();
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          if (line === "") {
            if (id !== null) this.lastEventId = id;
            if (data.length) this.onMessage(data.join("\n"), this.lastEventId);
            data = [];
            id = null;
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const content = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "data") data.push(content);
            else if (field === "id") id = content;
          }
        }
      }
    } finally {
      clearTimeout(watchdog);
    }
  }
}
