// The overview (every application's groups with their rollout) and one group's page with its
// policy form and the pause/resume switch.

import { enc, get, put } from "./api.js";
import { duration, facts, fill, h, statusKeyLabel, table } from "./dom.js";

function policySummary(p) {
  const parts = [
    p.updates_enabled ? "Updates enabled" : "Updates paused",
    `at most ${p.max_updates_per_period} per ${duration(p.period_interval_s)}`,
    `timeout ${duration(p.update_timeout_s)}`,
  ];
  if (p.safe_mode) parts.push("safe mode");
  if (p.office_hours) parts.push(`office hours (${p.timezone})`);
  return parts.join(" · ");
}

function progress(stats, labelId) {
  const pct = Math.round(stats.rollout_progress * 1000) / 10;
  return h(
    "div",
    { class: "progress-row" },
    h(
      "span",
      { id: labelId },
      stats.channel_version
        ? `${stats.updated_to_channel_version} of ${stats.total_instances} on ${stats.channel_version}`
        : "No package on the channel",
    ),
    h("progress", {
      max: 100,
      value: pct,
      "aria-labelledby": labelId,
      "data-stat": "rollout_progress",
      "data-value": String(stats.rollout_progress),
    }),
    h("span", { class: "pct" }, `${pct}%`),
  );
}

function counts(caption, entries, keyHeader, label = (k) => k) {
  const rows = Object.entries(entries)
    .sort((a, b) => b[1] - a[1])
    .map(([key, n]) => [label(key), h("span", { "data-count": key }, String(n))]);
  return table(caption, [keyHeader, "Instances"], rows, "no instances.");
}

function numbers(stats) {
  return facts([
    ["Instances", h("span", { "data-stat": "total_instances" }, String(stats.total_instances))],
    [
      "Updating now",
      h("span", { "data-stat": "updates_in_progress" }, String(stats.updates_in_progress)),
    ],
    ["Timed out", h("span", { "data-stat": "updates_timed_out" }, String(stats.updates_timed_out))],
  ]);
}

function groupCard(appId, group, channel, stats) {
  const paused = !group.policy.updates_enabled;
  const link = `#/apps/${enc(appId)}/groups/${enc(group.id)}`;
  return h(
    "article",
    { class: "card group-card", "data-group-id": group.id },
    h(
      "h3",
      {},
      h("a", { href: link }, group.name),
      " ",
      paused ? h("span", { class: "badge paused" }, "Paused") : null,
      group.rollout_in_progress ? h("span", { class: "badge live" }, "Rolling out") : null,
    ),
    facts([
      ["Channel", channel ? channel.name : "none"],
      ["Version", h("span", { "data-stat": "channel_version" }, stats.channel_version || "—")],
      ["Track", group.track],
      ["Policy", h("span", { class: "policy-summary" }, policySummary(group.policy))],
    ]),
    progress(stats, `progress-${group.id}`),
    numbers(stats),
    h(
      "div",
      { class: "two-col" },
      counts("Versions", stats.version_breakdown, "Version"),
      counts("Statuses", stats.status_counts, "Status", statusKeyLabel),
    ),
  );
}

async function appSection(app) {
  const base = `/apps/${enc(app.id)}`;
  const [groups, channels] = await Promise.all([get(`${base}/groups`), get(`${base}/channels`)]);
  const byId = Object.fromEntries(channels.map((c) => [c.id, c]));
  const stats = await Promise.all(groups.map((g) => get(`${base}/groups/${enc(g.id)}/stats`)));
  const cards = groups.map((g, i) => groupCard(app.id, g, byId[g.channel_id], stats[i]));
  return h(
    "section",
    { class: "app-section", "aria-labelledby": `app-${app.id}` },
    h("h2", { id: `app-${app.id}` }, app.name),
    app.description ? h("p", { class: "muted" }, app.description) : null,
    cards.length
      ? h("div", { class: "cards" }, cards)
      : h("p", { class: "muted" }, "No groups yet: `railcar server publish` creates one."),
  );
}

export async function overviewView(ctx, container) {
  const draw = async () => {
    const sections = await Promise.all(ctx.apps.map(appSection));
    fill(container, h("h2", { class: "sr-only" }, "Overview"), ...sections);
  };
  await draw();
  return { refresh: draw };
}

// -- one group -------------------------------------------------------------------------------

const NUMBER_FIELDS = [
  ["period_interval_s", "Period interval (seconds)", 1],
  ["max_updates_per_period", "Max updates per period", 1],
  ["update_timeout_s", "Update timeout (seconds)", 1],
];
const FLAGS = [
  ["updates_enabled", "Updates enabled"],
  ["safe_mode", "Safe mode (stop granting after a failed update)"],
  ["office_hours", "Office hours only (Mon–Fri 09:00–16:59)"],
];

function timezones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC"];
  }
}

function policyForm(ctx, group, save) {
  const p = group.policy;
  const editable = ctx.isAdmin;
  const fields = [
    ...FLAGS.map(([name, label]) =>
      h(
        "div",
        { class: "check" },
        h("input", { type: "checkbox", id: `policy-${name}`, name, checked: p[name] }),
        h("label", { for: `policy-${name}` }, label),
      ),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "policy-timezone" }, "Timezone (for office hours)"),
      h("input", {
        id: "policy-timezone",
        name: "timezone",
        value: p.timezone,
        list: "timezones",
        required: true,
        autocomplete: "off",
      }),
      h(
        "datalist",
        { id: "timezones" },
        timezones().map((z) => h("option", { value: z })),
      ),
    ),
    ...NUMBER_FIELDS.map(([name, label, min]) =>
      h(
        "div",
        { class: "field" },
        h("label", { for: `policy-${name}` }, label),
        h("input", {
          type: "number",
          id: `policy-${name}`,
          name,
          min: String(min),
          max: "2147483647",
          step: "1",
          required: true,
          value: String(p[name]),
        }),
      ),
    ),
  ];
  const form = h(
    "form",
    { id: "policy-form", class: "policy", "aria-labelledby": "policy-title" },
    h(
      "fieldset",
      { disabled: !editable },
      h("legend", { id: "policy-title" }, "Update policy"),
      editable
        ? null
        : h("p", { class: "muted" }, "Read-only token: the policy cannot be changed."),
      fields,
      editable ? h("button", { type: "submit", id: "policy-save" }, "Save policy") : null,
    ),
  );
  form.addEventListener("input", () => {
    form.dataset.dirty = "1";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const policy = {
      timezone: form.elements.timezone.value.trim(),
    };
    for (const [name] of FLAGS) policy[name] = form.elements[name].checked;
    for (const [name] of NUMBER_FIELDS) policy[name] = Number(form.elements[name].value);
    await save(policy, "Policy saved.");
  });
  return form;
}

export async function groupView(ctx, container, route) {
  const base = `/apps/${enc(ctx.app)}/groups/${enc(route.id)}`;
  const app = ctx.apps.find((a) => a.id === ctx.app);
  let group = await get(base);
  const channels = await get(`/apps/${enc(ctx.app)}/channels`);
  const channel = channels.find((c) => c.id === group.channel_id);
  const statsBox = h("section", { class: "card", "aria-labelledby": "rollout-title" });
  const formBox = h("div", {});
  const pauseBox = h("div", { class: "pause" });

  const save = async (policy, message) => {
    try {
      group = await put(base, { policy });
      ctx.notify(message, "success");
      drawControls(true);
    } catch (err) {
      ctx.failed(err);
    }
  };

  const drawControls = (force) => {
    const form = formBox.firstChild;
    if (force || !form || !form.dataset.dirty) fill(formBox, policyForm(ctx, group, save));
    const paused = !group.policy.updates_enabled;
    fill(
      pauseBox,
      h(
        "p",
        { id: "pause-state" },
        paused ? "Rollout paused: no updates are granted." : "Rollout running.",
      ),
      ctx.isAdmin
        ? h(
            "button",
            {
              type: "button",
              id: "pause-toggle",
              class: paused ? "primary" : "warn",
              "aria-pressed": paused ? "true" : "false",
              onclick: () =>
                save(
                  { ...group.policy, updates_enabled: paused },
                  paused ? "Rollout resumed." : "Rollout paused.",
                ),
            },
            paused ? "Resume rollout" : "Pause rollout",
          )
        : null,
    );
  };

  const drawStats = async () => {
    const stats = await get(`${base}/stats`);
    fill(
      statsBox,
      h("h3", { id: "rollout-title" }, "Rollout"),
      progress(stats, "group-progress"),
      numbers(stats),
      h(
        "div",
        { class: "two-col" },
        counts("Versions", stats.version_breakdown, "Version"),
        counts("Statuses", stats.status_counts, "Status", statusKeyLabel),
      ),
    );
  };

  const instancesLink = `#/apps/${enc(ctx.app)}/instances?group=${enc(group.id)}`;
  const crumbs = h(
    "p",
    { class: "crumbs" },
    h("a", { href: "#/overview" }, "Overview"),
    ` › ${app ? app.name : ""}`,
  );
  fill(
    container,
    crumbs,
    h("h2", { id: "group-title" }, `Group ${group.name}`),
    group.description ? h("p", {}, group.description) : null,
    facts([
      [
        "Channel",
        channel ? `${channel.name} (${channel.package_version || "no package"})` : "none",
      ],
      ["Track", group.track],
      ["Group id", h("code", {}, group.id)],
      ["Instances", h("a", { href: instancesLink }, "List this group's instances")],
    ]),
    pauseBox,
    h("div", { class: "group-grid" }, statsBox, formBox),
  );
  drawControls(true);
  await drawStats();
  return {
    refresh: async () => {
      group = await get(base);
      drawControls(false);
      await drawStats();
    },
  };
}
