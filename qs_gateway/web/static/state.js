// What several parts of the page share: the person's scopes, RE Manager's latest status, and
// the lock key to send with every change while the queue or environment is locked.

export const page = {
  scopes: new Set(),
  status: null,
  lockKey: "",
};

export function allowed(scope) {
  return page.scopes.has(scope);
}

/** The body of a change, with the lock key when one was entered. */
export function withLockKey(body = {}) {
  return page.lockKey ? { ...body, lock_key: page.lockKey } : body;
}

/** Report the outcome of an action in a live region. */
export function report(element, error, success = "") {
  element.textContent = error ? error.message : success;
  element.classList.toggle("error", Boolean(error));
}
