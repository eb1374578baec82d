// Small DOM helpers. Text from the server is only ever set as text (textContent), never as HTML.

export const byId = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") element.textContent = value;
    else if (name === "className") element.className = value;
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    element.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return element;
}

export function show(element, visible) {
  element.hidden = !visible;
}

/** A copy of a <template>'s first element. */
export function fromTemplate(id) {
  return byId(id).content.firstElementChild.cloneNode(true);
}

/** Ask the person to confirm, in the page's <dialog>; resolves to true or false. */
export function confirmAction(text, confirmLabel = "Confirm") {
  const dialog = byId("confirm");
  byId("confirm-text").textContent = text;
  byId("confirm-ok").textContent = confirmLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    byId("confirm-cancel").focus();
  });
}

/** A value as a person reads it: strings as they are, everything else as JSON. */
export function displayValue(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** An item's parameters in one line: "det1, det2 · num=3". */
export function describeParameters(item) {
  const args = (item.args || []).map(displayValue);
  const kwargs = Object.entries(item.kwargs || {}).map(([name, value]) => `${name}=${displayValue(value)}`);
  return [args.join(", "), kwargs.join(", ")].filter(Boolean).join(" · ");
}

export function formatTime(epochSeconds) {
  if (typeof epochSeconds !== "number") return "";
  return new Date(epochSeconds * 1000).toLocaleString();
}

export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
