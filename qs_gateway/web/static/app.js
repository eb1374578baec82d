// The page: sign in, then keep the Status, Controls, Queue, History and Console panels live.

import { clearReasons, gate } from "./access.js";
import { ApiError, get } from "./api.js";
import { finishExternalLogin, method, restore, signOut, signedIn, whenLost } from "./auth.js";
import { ConsoleFeed, ConsoleView } from "./console.js";
import { Controls } from "./controls.js";
import { byId, show } from "./dom.js";
import { HistoryView } from "./history.js";
import { LockForm } from "./lock.js";
import { Notifier } from "./notify.js";
import { PlanForm } from "./planform.js";
import { ProposalsView } from "./proposals.js";
import { QueueView } from "./queue.js";
import { loadProviders, SignIn } from "./signin.js";
import { allowed, page, report } from "./state.js";
import { StatusFeed, StatusView } from "./status.js";
import { SpreadsheetUpload } from "./upload.js";

const statusView = new StatusView();
const consoleView = new ConsoleView();
const notifier = new Notifier();
const queueView = new QueueView({ onEdit: (item) => planForm.edit(item) });
const planForm = new PlanForm({
  onChanged: (text) => {
    report(byId("queue-message"), null, text);
    queueView.refresh();
  },
});
const historyView = new HistoryView({ onNewItems: (items) => notifier.itemsFinished(items) });
const controls = new Controls({ onDone: () => feeds.status?.fetch() });
const proposals = new ProposalsView({ onDecided: () => queueView.refresh() });
const lockForm = new LockForm({ onDone: () => feeds.status?.fetch() });
new SpreadsheetUpload({ onChanged: () => queueView.refresh() });
const signIn = new SignIn({ onSignedIn: () => enter() });
const feeds = { status: null, console: null };
let lockInfoUid = null;

function stopFeeds() {
  proposals.stop();
  feeds.status?.stop();
  feeds.console?.stop();
  feeds.status = feeds.console = null;
}

function onStatus(status) {
  page.status = status;
  statusView.update(status);
  controls.update(status);
  notifier.onStatus(status);
  if (allowed("read:queue")) queueView.onStatus(status);
  if (allowed("read:history")) historyView.onStatus(status);
  if (allowed("read:resources")) planForm.onStatus(status);
  if (status.lock_info_uid !== lockInfoUid && allowed("read:lock")) {
    lockInfoUid = status.lock_info_uid;
    get("lock/info").then((answer) => {
      statusView.setLockInfo(answer.lock_info);
      lockForm.setInfo(answer.lock_info);
    }, () => {});
  }
}

function onReachable(reachable, reason) {
  statusView.setReachable(reachable, reason);
  controls.setReachable(reachable);
  byId("connection").textContent = reachable ? "" : reason;
}

// The panels a person may not read, and the scope each needs: hidden, and said so.
const PANELS = [
  ["queue", "read:queue", "the queue"],
  ["proposals", "read:queue", "the proposals"],
  ["history", "read:history", "the history"],
  ["console", "read:console", "the console output"],
  ["plan-form", "read:resources", "the plans (to add one)"],
];

function applyScopes() {
  const unseen = [];
  for (const [id, scope, what] of PANELS) {
    show(byId(id), allowed(scope));
    if (!allowed(scope)) unseen.push(`${what} (${scope})`);
  }
  byId("unseen-panels").textContent = unseen.length ? `Your account may not see ${unseen.join(", ")}.` : "";
  show(byId("unseen-panels"), unseen.length > 0);
  // what the scopes forbid stays in view, disabled, with the reason
  const queueDenied = byId("queue-denied");
  clearReasons(queueDenied);
  for (const id of ["plan-submit", "add-stop", "upload-submit", "upload-file"]) {
    byId(id).disabled = false;
    gate(byId(id), "write:queue:edit", queueDenied);
  }
  controls.applyScopes();
  lockForm.applyScopes();
}

async function describeAccount() {
  if (!signedIn()) return "Not signed in";
  try {
    const who = await get("auth/whoami");
    const name = who.identities?.[0]?.id || who.uuid || "single user";
    return `Signed in as ${name}${method() === "api_key" ? " (API key)" : ""}`;
  } catch {
    return "Signed in";
  }
}

/** Start (or restart) the panels for the current credentials. */
async function enter() {
  stopFeeds();
  queueView.reset();
  historyView.reset();
  consoleView.clear();
  lockForm.reset();
  lockInfoUid = null;
  let scopes;
  try {
    scopes = await get("auth/scopes");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      await signOut();
      signIn.open(error.message === "Invalid API key" ? "The API key was refused." : error.message);
      show(byId("workspace"), false);
      return;
    }
    byId("connection").textContent = `The gateway does not answer (${error.message}); trying again…`;
    setTimeout(enter, 3000);
    return;
  }
  page.scopes = new Set(scopes.scopes || []);
  const canSee = allowed("read:status");
  // named before it is shown: a person (or a test) never sees the bar without the name
  byId("account-name").textContent = await describeAccount();
  show(byId("account"), signedIn());
  if (signedIn()) signIn.close();
  else signIn.open();
  show(byId("workspace"), canSee);
  show(byId("unseen-panels"), false);
  if (!canSee) return;
  applyScopes();
  if (allowed("read:queue")) proposals.start();
  feeds.status = new StatusFeed({ onStatus, onReachable });
  feeds.status.start();
  if (allowed("read:console")) {
    feeds.console = new ConsoleFeed(consoleView, { isBusy: () => page.status?.manager_state !== "idle" });
    feeds.console.start();
  }
  if (document.hidden) for (const feed of [feeds.status, feeds.console]) feed?.suspend();
}

whenLost(async () => {
  stopFeeds();
  await signOut();
  show(byId("workspace"), false);
  show(byId("account"), false);
  signIn.open("Your session has ended; please sign in again.");
});

// A page left (or kept in the back-forward cache) must not keep its streams open: browsers allow
// only a few connections to one server, for all its tabs together.
window.addEventListener("pagehide", stopFeeds);
window.addEventListener("pageshow", (event) => {
  if (event.persisted) enter();
});
document.addEventListener("visibilitychange", () => {
  for (const feed of [feeds.status, feeds.console]) {
    if (feed) document.hidden ? feed.suspend() : feed.resume();
  }
});

byId("sign-out").addEventListener("click", async () => {
  stopFeeds();
  await signOut();
  page.scopes = new Set();
  await enter();
});

async function main() {
  let message = "";
  try {
    signIn.offer(await loadProviders());
  } catch (error) {
    message = `The gateway does not answer (${error.message}).`;
  }
  try {
    if (!(await finishExternalLogin())) await restore();
  } catch (error) {
    message = error.message;
  }
  await enter();
  if (message) signIn.open(message);
}

main();
