// Packages and channels (admins point a channel at a package), and the activity feed.

import { enc, get, put, query } from "./api.js";
import { activityLabel, bytes, fill, h, severityBadge, table, when } from "./dom.js";

function channelControl(ctx, channel, packages, done) {
  const id = `channel-package-${channel.id}`;
  const options = [
    h("option", { value: "" }, "(no package)"),
    ...packages
      .filter((p) => p.arch === channel.arch)
      .map((p) => h("option", { value: p.id, selected: p.id === channel.package_id }, p.version)),
  ];
  const form = h(
    "form",
    { class: "inline-form", "data-channel-id": channel.id },
    h("label", { for: id, class: "sr-only" }, `Package for channel ${channel.name}`),
    h("select", { id, name: "package" }, options),
    h("button", { type: "submit" }, "Point channel"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const packageId = form.elements.package.value || null;
    try {
      const updated = await put(`/apps/${enc(ctx.app)}/channels/${enc(channel.id)}`, {
        package_id: packageId,
      });
      ctx.notify(
        `Channel ${updated.name} now serves ${updated.package_version || "no package"}.`,
        "success",
      );
      await done();
    } catch (err) {
      ctx.failed(err);
    }
  });
  return form;
}

export async function packagesView(ctx, container) {
  const base = `/apps/${enc(ctx.app)}`;
  const channelsBox = h("section", { "aria-labelledby": "channels-title" });
  const packagesBox = h("section", { "aria-labelledby": "packages-title" });

  const draw = async () => {
    const [packages, channels] = await Promise.all([
      get(`${base}/packages`),
      get(`${base}/channels`),
    ]);
    const focused = channelsBox.contains(document.activeElement);
    if (!focused) {
      fill(
        channelsBox,
        h("h2", { id: "channels-title" }, "Channels"),
        table(
          "Each channel and the package it serves",
          ctx.isAdmin
            ? ["Channel", "Arch", "Package", "Change package"]
            : ["Channel", "Arch", "Package"],
          channels.map((c) => {
            const cells = [c.name, c.arch, c.package_version || "—"];
            if (ctx.isAdmin) cells.push(channelControl(ctx, c, packages, draw));
            return cells;
          }),
        ),
      );
    }
    fill(
      packagesBox,
      h("h2", { id: "packages-title" }, "Packages"),
      table(
        "Packages, newest first",
        ["Version", "Arch", "File", "Size", "Hosted here", "Extra files", "Created"],
        packages.map((p) => [
          p.version,
          p.arch,
          p.filename,
          bytes(p.size),
          p.hosted ? "yes" : "no",
          p.extra_files.length ? p.extra_files.map((f) => f.name).join(", ") : "—",
          when(p.created_ts),
        ]),
      ),
    );
  };
  fill(container, channelsBox, packagesBox);
  await draw();
  return { refresh: draw };
}

export async function activityView(ctx, container, route) {
  const app = route.app || ctx.app;
  const [groups, channels] = await Promise.all([
    get(`/apps/${enc(app)}/groups`),
    get(`/apps/${enc(app)}/channels`),
  ]);
  const names = Object.fromEntries([...groups, ...channels].map((x) => [x.id, x.name]));
  const list = h("div", { id: "activity-list" });
  const draw = async () => {
    const items = await get(`/activity${query({ app, limit: 100 })}`);
    fill(
      list,
      table(
        "Latest 100 events",
        ["When", "Severity", "What", "Version", "Group", "Channel", "Instance"],
        items.map((a) => [
          when(a.created_ts),
          severityBadge(a.severity),
          activityLabel(a.activity_class),
          a.version || "—",
          a.group_id ? names[a.group_id] || a.group_id : "—",
          a.channel_id ? names[a.channel_id] || a.channel_id : "—",
          a.instance_id
            ? h("a", { href: `#/apps/${enc(app)}/instances/${enc(a.instance_id)}` }, a.instance_id)
            : "—",
        ]),
      ),
    );
  };
  fill(container, h("h2", {}, "Activity"), list);
  await draw();
  return { refresh: draw };
}
