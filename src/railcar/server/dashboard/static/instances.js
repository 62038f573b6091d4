// Instances: search and page through them; one instance with its status history and events.

import { enc, get, put, query } from "./api.js";
import {
  STATUSES,
  eventLabel,
  facts,
  fill,
  h,
  statusBadge,
  statusLabel,
  table,
  when,
} from "./dom.js";

const PAGE_SIZE = 25; // #/…/instances?limit=N picks another page size (1–1000)

function searchForm(params, groups) {
  const statusOptions = [
    h("option", { value: "" }, "Any status"),
    ...Object.entries(STATUSES).map(([code, [, label]]) =>
      h("option", { value: code, selected: params.status === code }, label),
    ),
  ];
  const groupOptions = [
    h("option", { value: "" }, "Any group"),
    ...groups.map((g) => h("option", { value: g.id, selected: params.group === g.id }, g.name)),
  ];
  return h(
    "form",
    { id: "instance-search", class: "search", role: "search" },
    h(
      "div",
      { class: "field grow" },
      h("label", { for: "search-text" }, "Search: id prefix, alias, IP or version"),
      h("input", {
        id: "search-text",
        name: "search",
        type: "search",
        value: params.search || "",
        maxlength: "255",
      }),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "search-status" }, "Status"),
      h("select", { id: "search-status", name: "status" }, statusOptions),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "search-group" }, "Group"),
      h("select", { id: "search-group", name: "group" }, groupOptions),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "search-version" }, "Version"),
      h("input", { id: "search-version", name: "version", value: params.version || "" }),
    ),
    h("button", { type: "submit" }, "Search"),
  );
}

export async function instancesView(ctx, container, route) {
  const appBase = `/apps/${enc(ctx.app)}`;
  const params = route.params;
  const page = Math.max(0, Number(params.page || 0) | 0);
  const size = Math.min(1000, Math.max(1, Number(params.limit || PAGE_SIZE) | 0));
  const groups = await get(`${appBase}/groups`);
  const groupName = Object.fromEntries(groups.map((g) => [g.id, g.name]));
  const form = searchForm(params, groups);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = {};
    for (const name of ["search", "status", "group", "version"]) {
      wanted[name] = form.elements[name].value.trim();
    }
    wanted.limit = params.limit;
    ctx.navigate(`#/apps/${enc(ctx.app)}/instances${query(wanted)}`);
  });
  const results = h("div", { id: "instance-results" });

  const draw = async () => {
    const list = await get(
      `${appBase}/instances${query({
        search: params.search,
        status: params.status,
        group: params.group,
        version: params.version,
        limit: size,
        offset: page * size,
      })}`,
    );
    const rows = list.instances.map((i) => [
      h("a", { href: `#/apps/${enc(ctx.app)}/instances/${enc(i.id)}` }, h("code", {}, i.id)),
      i.alias || "—",
      i.ip || "—",
      i.version,
      statusBadge(i.status),
      i.group_id ? groupName[i.group_id] || i.group_id : "—",
      when(i.last_check_for_updates),
    ]);
    const first = list.total ? page * size + 1 : 0;
    const last = page * size + list.instances.length;
    const pageLink = (n, label, rel) =>
      h(
        "a",
        {
          href: `#/apps/${enc(ctx.app)}/instances${query({ ...params, page: n || "" })}`,
          rel,
          class: "button",
        },
        label,
      );
    fill(
      results,
      h("p", { id: "instance-count" }, `Showing ${first}–${last} of ${list.total}`),
      table(
        "Instances",
        ["Id", "Alias", "IP", "Version", "Status", "Group", "Last check"],
        rows,
        "none match.",
      ),
      h(
        "nav",
        { class: "pager", "aria-label": "Pages" },
        page > 0 ? pageLink(page - 1, "‹ Previous", "prev") : null,
        last < list.total ? pageLink(page + 1, "Next ›", "next") : null,
      ),
    );
  };

  fill(container, h("h2", {}, "Instances"), form, results);
  await draw();
  return { refresh: draw };
}

function aliasForm(ctx, path, instance, done) {
  const form = h(
    "form",
    { id: "alias-form", class: "inline-form" },
    h("label", { for: "alias-input" }, "Alias"),
    h("input", { id: "alias-input", name: "alias", value: instance.alias, maxlength: "255" }),
    h("button", { type: "submit" }, "Save alias"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await put(path, { alias: form.elements.alias.value.trim() });
      ctx.notify("Alias saved.", "success");
      await done();
    } catch (err) {
      ctx.failed(err);
    }
  });
  return form;
}

export async function instanceView(ctx, container, route) {
  const path = `/apps/${enc(ctx.app)}/instances/${enc(route.id)}`;
  const groups = await get(`/apps/${enc(ctx.app)}/groups`);
  const groupName = Object.fromEntries(groups.map((g) => [g.id, g.name]));
  const body = h("div", {});
  const aliasBox = h("div", {});

  const draw = async () => {
    const i = await get(path);
    fill(
      body,
      facts([
        ctx.isAdmin ? null : ["Alias", i.alias || "—"],
        ["IP", i.ip || "—"],
        ["OEM", i.oem || "—"],
        ["Version", i.version],
        ["Status", statusBadge(i.status)],
        [
          "Group",
          i.group_id
            ? h(
                "a",
                { href: `#/apps/${enc(ctx.app)}/groups/${enc(i.group_id)}` },
                groupName[i.group_id] || i.group_id,
              )
            : "—",
        ],
        ["Last check", when(i.last_check_for_updates)],
        [
          "Last update granted",
          i.last_update_version
            ? [i.last_update_version, " at ", when(i.last_update_granted_ts)]
            : "—",
        ],
        ["Update in progress", i.update_in_progress ? "yes" : "no"],
        ["Rolled back from", i.rolled_back_from.length ? i.rolled_back_from.join(", ") : "—"],
      ]),
      h(
        "div",
        { id: "status-history" },
        table(
          "Status history",
          ["When", "Status", "Version"],
          i.history.map((s) => [when(s.created_ts), statusLabel(s.status), s.version]),
        ),
      ),
      h(
        "div",
        { id: "instance-events" },
        table(
          "Events",
          ["When", "Event", "Error code", "Previous version"],
          i.events.map((e) => [
            when(e.created_ts),
            eventLabel(e.event_type, e.event_result),
            e.error_code === null ? "—" : String(e.error_code),
            e.previous_version || "—",
          ]),
        ),
      ),
    );
    return i;
  };

  const back = h("a", { href: `#/apps/${enc(ctx.app)}/instances` }, "Instances");
  fill(
    container,
    h("p", { class: "crumbs" }, back, " › instance"),
    h("h2", { id: "instance-title" }, h("code", {}, route.id)),
    aliasBox,
    body,
  );
  const first = await draw();
  if (ctx.isAdmin) fill(aliasBox, aliasForm(ctx, path, first, draw));
  return { refresh: draw };
}
