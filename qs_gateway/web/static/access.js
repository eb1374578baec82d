// Controls the person's scopes do not allow stay in view, disabled, with the reason written in
// their panel and tied to each of them (aria-describedby), never hidden without a word.

import { el } from "./dom.js";
import { allowed } from "./state.js";

const WHAT = {
  "write:queue:edit": "change the queue",
  "write:queue:control": "start or stop the queue, or change its mode",
  "write:manager:control": "open or close the environment",
  "write:plan:control": "pause, resume or stop a plan",
  "write:execute": "execute an item at once",
  "write:history:edit": "clear the history",
  "write:lock": "lock or unlock RE Manager",
  "write:queue:approve": "approve or deny proposals",
};

export function reasonText(scope) {
  return `Your account may not ${WHAT[scope] || scope} (it lacks the scope ${scope}).`;
}

/** The id of the note (in `container`) that says why controls of `scope` are disabled. */
export function reasonId(container, scope) {
  const id = `${container.id}-${scope.replaceAll(":", "-")}`;
  if (!document.getElementById(id)) container.append(el("p", { id, className: "denied", text: reasonText(scope) }));
  return id;
}

/**
 * Disable `control` (and say why) when the scope is missing; returns whether it is allowed.
 * `describedBy`: ids the control is described by anyway (kept).
 */
export function gate(control, scope, container, describedBy = "") {
  const ok = allowed(scope);
  const ids = ok ? describedBy : `${describedBy} ${reasonId(container, scope)}`.trim();
  if (ids) control.setAttribute("aria-describedby", ids);
  else control.removeAttribute("aria-describedby");
  control.title = ok ? "" : reasonText(scope);
  if (!ok) control.disabled = true;
  return ok;
}

/** Remove the notes of an earlier sign-in. */
export function clearReasons(...containers) {
  for (const container of containers) container.replaceChildren();
}
