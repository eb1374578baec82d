// The form that adds (or edits) a plan: generated from the plans the person may use, one field
// per parameter, each value checked by the gateway's validate endpoint as it is typed, so an
// invalid item shows the message beside its field before anything is sent.

import { ApiError, command, get, post } from "./api.js";
import { byId, el, show } from "./dom.js";
import { report, withLockKey } from "./state.js";

const KIND = { POSITIONAL_ONLY: 0, POSITIONAL_OR_KEYWORD: 1, VAR_POSITIONAL: 2, KEYWORD_ONLY: 3, VAR_KEYWORD: 4 };
const KIND_TEXT = ["positional", "positional or keyword", "any number of positional values (a JSON list)",
  "keyword", "any keyword values (a JSON object)"];
const DEVICE_MARKERS = {
  __READABLE__: (device) => device.is_readable,
  __MOVABLE__: (device) => device.is_movable,
  __FLYABLE__: (device) => device.is_flyable,
  __DEVICE__: () => true,
};
const LIST_OF = /^(?:collections\.abc\.|typing\.)?(?:Sequence|Iterable|Collection|List|list|tuple|Tuple)\[\s*([\w.]+)\s*(?:,\s*\.\.\.)?\]$/;
const VALIDATE_DELAY_MS = 350;

/** The names a parameter's annotation lets the person choose from, and whether it is a list. */
function choicesOf(annotation, devices) {
  const type = (annotation?.type || "").replace(/\s*\|\s*None$/, "").trim();
  let named = null;
  for (const group of ["devices", "plans", "enums"]) {
    for (const [name, values] of Object.entries(annotation?.[group] || {})) {
      if (type.includes(name)) named = { name, values: values.map(String) };
    }
  }
  if (!named) {
    for (const [marker, fits] of Object.entries(DEVICE_MARKERS)) {
      if (type.includes(marker)) {
        named = { name: marker, values: Object.keys(devices).filter((name) => fits(devices[name])).sort() };
        break;
      }
    }
  }
  if (!named) return null;
  const list = LIST_OF.exec(type);
  const exact = type === named.name || (list && list[1] === named.name);
  return { values: named.values, multiple: Boolean(list), exact };
}

/** What a person typed, as a value: JSON, Python's None/True/False, or else the text itself. */
export function parseText(text) {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  if (trimmed === "None") return null;
  if (trimmed === "True") return true;
  if (trimmed === "False") return false;
  try {
    return JSON.parse(trimmed);
  } catch {
    return trimmed;
  }
}

function asText(value) {
  if (typeof value === "string" && parseText(value) === value) return value;
  return JSON.stringify(value);
}

class Field {
  constructor(parameter, devices) {
    this.name = parameter.name;
    this.kind = parameter.kind?.value ?? KIND.POSITIONAL_OR_KEYWORD;
    const id = `param-${parameter.name}`;
    const choices = choicesOf(parameter.annotation, devices);
    if (choices?.exact) {
      this.input = el("select", { id, multiple: choices.multiple, size: choices.multiple ? Math.min(6, choices.values.length) : null },
        choices.multiple ? [] : [el("option", { value: "", text: "—" })],
        choices.values.map((value) => el("option", { value, text: value })));
      this.multiple = choices.multiple;
    } else {
      this.input = el("input", { id, type: "text", spellcheck: "false", autocomplete: "off" });
      if (choices) {
        const list = el("datalist", { id: `${id}-choices` }, choices.values.map((value) => el("option", { value })));
        this.input.setAttribute("list", list.id);
        this.extra = list;
      }
      if (parameter.default !== undefined) this.input.placeholder = String(parameter.default);
    }
    this.error = el("p", { id: `${id}-error`, className: "error field-error" });
    const help = el("p", { id: `${id}-help`, className: "help", text: parameter.description || "" });
    this.input.setAttribute("aria-describedby", `${help.id} ${this.error.id}`);
    const facts = [parameter.annotation?.type, KIND_TEXT[this.kind]];
    if (parameter.default !== undefined) facts.push(`default ${parameter.default}`);
    else if (this.kind < KIND.VAR_POSITIONAL || this.kind === KIND.KEYWORD_ONLY) facts.push("required");
    const prefix = this.kind === KIND.VAR_POSITIONAL ? "*" : this.kind === KIND.VAR_KEYWORD ? "**" : "";
    this.element = el("div", { className: "param" },
      el("label", { for: id, text: prefix + parameter.name }),
      el("span", { className: "facts", text: facts.filter(Boolean).join(" · ") }),
      this.input, this.extra, help, this.error);
  }

  read() {
    if (this.input.tagName === "SELECT") {
      if (!this.multiple) return this.input.value || undefined;
      const chosen = [...this.input.selectedOptions].map((option) => option.value);
      return chosen.length ? chosen : undefined;
    }
    return parseText(this.input.value);
  }

  write(value) {
    if (this.input.tagName !== "SELECT") {
      this.input.value = value === undefined ? "" : asText(value);
      return;
    }
    const wanted = new Set((Array.isArray(value) ? value : [value]).map(String));
    for (const option of this.input.options) option.selected = wanted.has(option.value);
  }

  showError(message) {
    this.error.textContent = message || "";
    if (message) this.input.setAttribute("aria-invalid", "true");
    else this.input.removeAttribute("aria-invalid");
  }
}

export class PlanForm {
  constructor({ onChanged }) {
    this.form = byId("plan-form");
    this.select = byId("plan-select");
    this.paramsBox = byId("plan-params");
    this.error = byId("plan-error");
    this.submitButton = byId("plan-submit");
    this.onChanged = onChanged;
    this.plans = {};
    this.devices = {};
    this.fields = [];
    this.editing = null;
    this.sequence = 0;
    this.validateAvailable = true;
    this.plansUid = this.devicesUid = null;
    this.select.addEventListener("change", () => this.choose(this.select.value));
    this.form.addEventListener("input", (event) => event.target !== this.select && this.scheduleValidation());
    this.form.addEventListener("change", (event) => event.target !== this.select && this.scheduleValidation());
    this.form.addEventListener("submit", (event) => this.submit(event));
    byId("plan-cancel").addEventListener("click", () => this.stopEditing());
    byId("add-stop").addEventListener("click", () => this.addStop());
  }

  async onStatus(status) {
    if (status.devices_allowed_uid !== this.devicesUid) {
      this.devicesUid = status.devices_allowed_uid;
      this.devices = (await this.load("devices/allowed")).devices_allowed || {};
    }
    if (status.plans_allowed_uid !== this.plansUid) {
      this.plansUid = status.plans_allowed_uid;
      this.plans = (await this.load("plans/allowed")).plans_allowed || {};
      this.listPlans();
    }
  }

  async load(path) {
    try {
      return (await get(path)) || {};
    } catch (error) {
      report(this.error, error);
      return {};
    }
  }

  listPlans() {
    const current = this.select.value;
    const names = Object.keys(this.plans).sort();
    this.select.replaceChildren(el("option", { value: "", text: "Choose a plan…" }),
      ...names.map((name) => el("option", { value: name, text: name })));
    this.select.value = names.includes(current) ? current : "";
    if (this.select.value !== current) this.choose(this.select.value);
  }

  choose(name) {
    const plan = this.plans[name];
    byId("plan-description").textContent = plan?.description || "";
    this.fields = (plan?.parameters || []).map((parameter) => new Field(parameter, this.devices));
    this.paramsBox.replaceChildren(...this.fields.map((field) => field.element));
    this.error.textContent = "";
    this.select.value = plan ? name : "";
  }

  /** The item the form describes, as RE Manager takes it. */
  item() {
    const args = [];
    const kwargs = {};
    const hasVarArgs = this.fields.some((f) => f.kind === KIND.VAR_POSITIONAL && f.read() !== undefined);
    for (const field of this.fields) {
      const value = field.read();
      if (value === undefined) continue;
      if (field.kind === KIND.POSITIONAL_ONLY || (field.kind === KIND.POSITIONAL_OR_KEYWORD && hasVarArgs)) args.push(value);
      else if (field.kind === KIND.VAR_POSITIONAL) args.push(...(Array.isArray(value) ? value : [value]));
      else if (field.kind === KIND.VAR_KEYWORD && value && typeof value === "object") Object.assign(kwargs, value);
      else kwargs[field.name] = value;
    }
    const item = { item_type: "plan", name: this.select.value };
    if (args.length) item.args = args;
    if (Object.keys(kwargs).length) item.kwargs = kwargs;
    return item;
  }

  /** Show a queued item's parameters in the form, to be saved in its place. */
  edit(item) {
    if (!this.plans[item.name]) {
      report(this.error, new Error(`The plan ${item.name} is not among the plans you may use.`));
      return;
    }
    this.choose(item.name);
    const args = [...(item.args || [])];
    const kwargs = { ...(item.kwargs || {}) };
    for (const field of this.fields) {
      if (field.kind <= KIND.POSITIONAL_OR_KEYWORD && args.length) field.write(args.shift());
      else if (field.kind === KIND.VAR_POSITIONAL && args.length) field.write(args.splice(0));
      else if (field.kind !== KIND.VAR_KEYWORD && field.name in kwargs) {
        field.write(kwargs[field.name]);
        delete kwargs[field.name];
      }
    }
    const rest = this.fields.find((field) => field.kind === KIND.VAR_KEYWORD);
    if (rest && Object.keys(kwargs).length) rest.write(kwargs);
    this.editing = item.item_uid;
    byId("plan-form-title").textContent = `Edit ${item.name}`;
    this.submitButton.textContent = "Save changes";
    show(byId("plan-cancel"), true);
    this.form.scrollIntoView({ block: "nearest" });
    this.select.focus();
    this.scheduleValidation();
  }

  stopEditing() {
    this.editing = null;
    byId("plan-form-title").textContent = "Add a plan";
    this.submitButton.textContent = "Add to queue";
    show(byId("plan-cancel"), false);
    this.choose(this.select.value);
  }

  scheduleValidation() {
    clearTimeout(this.timer);
    if (this.select.value) this.timer = setTimeout(() => this.validate(), VALIDATE_DELAY_MS);
  }

  /** The validate endpoint's verdict, shown beside the fields; null if none could be had. */
  async validate() {
    clearTimeout(this.timer);
    if (!this.validateAvailable) return { success: true };
    const sequence = ++this.sequence;
    let verdict;
    try {
      verdict = await post("queue/item/validate", { item: this.item() });
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 405 || error.lacksScopes)) {
        this.validateAvailable = false; // an older gateway: RE Manager's answer to the add tells instead
        return { success: true };
      }
      if (sequence === this.sequence) report(this.error, error);
      return null;
    }
    if (sequence !== this.sequence) return null; // a newer check is on its way
    this.showVerdict(verdict);
    return verdict;
  }

  showVerdict(verdict) {
    const errors = { ...(verdict.errors || {}) };
    for (const field of this.fields) {
      const message = errors[field.name];
      delete errors[field.name];
      field.showError(Array.isArray(message) ? message.join("; ") : message);
    }
    const rest = Object.entries(errors).map(([name, message]) => `${name}: ${message}`);
    if (verdict.success === false && !rest.length && !this.fields.some((f) => f.error.textContent)) {
      rest.push(verdict.msg || "The item is not valid.");
    }
    this.error.textContent = rest.join("\n");
  }

  async submit(event) {
    event.preventDefault();
    if (!this.select.value) {
      report(this.error, new Error("Choose a plan first."));
      this.select.focus();
      return;
    }
    const verdict = await this.validate();
    if (!verdict || verdict.success === false) {
      const invalid = this.fields.find((field) => field.error.textContent);
      (invalid ? invalid.input : this.select).focus();
      return;
    }
    const item = this.item();
    try {
      if (this.editing) {
        await command("queue/item/update", withLockKey({ item: { ...item, item_uid: this.editing } }));
        this.stopEditing();
      } else {
        await command("queue/item/add", withLockKey({ item }));
        this.choose(this.select.value); // empty fields for the next item of this plan
      }
      report(this.error, null);
      this.onChanged(`${item.name} is in the queue.`);
    } catch (error) {
      report(this.error, error);
    }
  }

  async addStop() {
    try {
      await command("queue/item/add", withLockKey({ item: { item_type: "instruction", name: "queue_stop" } }));
      this.onChanged("A queue stop is in the queue.");
    } catch (error) {
      report(this.error, error);
    }
  }
}
