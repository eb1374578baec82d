// The history written as a file, in the three formats of the Qt queue monitor: JSON, YAML and
// plain text. The YAML is written here (block style, every string quoted as a JSON string, which
// YAML reads the same), so the page needs no library for it.

import { describeParameters, formatTime } from "./dom.js";

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function yamlKey(key) {
  return PLAIN_KEY.test(key) ? key : JSON.stringify(key);
}

function yamlScalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number" && !Number.isFinite(value)) return value > 0 ? ".inf" : value < 0 ? "-.inf" : ".nan";
  return JSON.stringify(value);
}

function isEmptyCollection(value) {
  return typeof value === "object" && value !== null && Object.keys(value).length === 0;
}

/** `value` as YAML lines, indented by `indent` spaces. */
function yamlLines(value, indent) {
  const pad = " ".repeat(indent);
  if (Array.isArray(value)) {
    return value.flatMap((entry) => {
      if (typeof entry === "object" && entry !== null && !isEmptyCollection(entry)) {
        const [first, ...rest] = yamlLines(entry, indent + 2);
        return [`${pad}- ${first.trimStart()}`, ...rest];
      }
      return [`${pad}- ${isEmptyCollection(entry) ? JSON.stringify(entry) : yamlScalar(entry)}`];
    });
  }
  return Object.entries(value).flatMap(([key, entry]) => {
    if (typeof entry === "object" && entry !== null && !isEmptyCollection(entry)) {
      return [`${pad}${yamlKey(key)}:`, ...yamlLines(entry, Array.isArray(entry) ? indent : indent + 2)];
    }
    return [`${pad}${yamlKey(key)}: ${isEmptyCollection(entry) ? JSON.stringify(entry) : yamlScalar(entry)}`];
  });
}

export function toYaml(items) {
  return items.length ? `${yamlLines(items, 0).join("\n")}\n` : "[]\n";
}

export function toText(items) {
  return items
    .map((item, index) => {
      const result = item.result || {};
      const lines = [
        `${index + 1}. ${item.name} (${item.item_type})`,
        `   Parameters: ${describeParameters(item) || "none"}`,
        `   User: ${item.user ?? ""} (${item.user_group ?? ""})`,
        `   Exit status: ${result.exit_status ?? "unknown"}`,
        `   Started: ${formatTime(result.time_start)}`,
        `   Finished: ${formatTime(result.time_stop)}`,
        `   Item uid: ${item.item_uid}`,
      ];
      if (result.run_uids?.length) lines.push(`   Runs: ${result.run_uids.join(", ")}`);
      if (result.msg) lines.push(`   Message: ${result.msg}`);
      if (result.traceback) lines.push("   Traceback:", ...result.traceback.split("\n").map((line) => `     ${line}`));
      return lines.join("\n");
    })
    .join("\n\n")
    .concat("\n");
}

const FORMATS = {
  json: { type: "application/json", write: (items) => `${JSON.stringify(items, null, 2)}\n` },
  yaml: { type: "application/yaml", write: toYaml },
  txt: { type: "text/plain", write: toText },
};

/** Offer `items` as a file download named plan-history.<format>. */
export function download(items, format) {
  const { type, write } = FORMATS[format];
  const url = URL.createObjectURL(new Blob([write(items)], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `plan-history.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
