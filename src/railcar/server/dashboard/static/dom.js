// Small DOM helpers and the vocabularies the API speaks in numbers.

// h("a", {href: "#"}, "text", child): text is always set as text, never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

// Replace el's children, skipping null/false the way h() does (replaceChildren would not).
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// A table with a caption, column headers and one row per item (cells: strings or nodes).
export function table(caption, headers, rows, empty = "Nothing yet.") {
  if (rows.length === 0) {
    return h("div", { class: "table-wrap" }, h("p", { class: "muted" }, `${caption}: ${empty}`));
  }
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((cells) =>
          h(
            "tr",
            {},
            cells.map((c) => h("td", {}, c)),
          ),
        ),
      ),
    ),
  );
}

// A definition list from [term, value] pairs (null pairs are left out).
export function facts(pairs) {
  const shown = pairs.filter(Boolean);
  return h(
    "dl",
    { class: "facts" },
    shown.map(([t, d]) => [h("dt", {}, t), h("dd", {}, d)]),
  );
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return h("time", { datetime: iso, title: d.toISOString() }, d.toLocaleString());
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function duration(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

// Instance statuses (server/vocab.py InstanceStatus, Nebraska's numbering) and UI labels.
export const STATUSES = {
  1: ["undefined", "Undefined"],
  2: ["update_granted", "Update granted"],
  3: ["error", "Error"],
  4: ["complete", "Complete"],
  5: ["installed", "Installed"],
  6: ["downloaded", "Downloaded"],
  7: ["downloading", "Downloading"],
  8: ["on_hold", "On hold"],
};

export function statusLabel(code) {
  if (code === null || code === undefined) return "—";
  return STATUSES[code] ? STATUSES[code][1] : `status ${code}`;
}

export function statusKeyLabel(key) {
  if (key === "none") return "No status yet";
  const found = Object.values(STATUSES).find(([k]) => k === key);
  return found ? found[1] : key;
}

export function statusBadge(code) {
  const key = STATUSES[code] ? STATUSES[code][0] : "none";
  return h("span", { class: `status status-${key}` }, statusLabel(code));
}

// Omaha event (type, result) pairs as update_engine reports them.
const EVENTS = {
  "3/0": "Error during an update step",
  "3/1": "Update applied, reboot pending",
  "3/2": "Rebooted into the new version",
  "3/9": "Update deferred",
  "13/1": "Download started",
  "14/1": "Download finished",
  "800/1": "Installed, completion held by the instance",
};

export function eventLabel(type, result) {
  return EVENTS[`${type}/${result}`] || `event ${type}, result ${result}`;
}

// Activity classes and severities (server/vocab.py ActivityClass, Severity).
const ACTIVITY = {
  1: "Package not found",
  2: "Rollout started",
  3: "Rollout finished",
  4: "Rollout failed",
  5: "Instance update failed",
  6: "Channel package updated",
};
export const SEVERITIES = { 1: "success", 2: "info", 3: "warning", 4: "error" };

export function activityLabel(code) {
  return ACTIVITY[code] || `activity ${code}`;
}

export function severityBadge(code) {
  const name = SEVERITIES[code] || "info";
  return h("span", { class: `severity severity-${name}` }, name);
}
