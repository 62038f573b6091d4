// The dashboard shell: log in with a token, pick an application, route between views,
// refresh the current view every 10 s unless paused.

import { ApiError, get, setToken, token } from "./api.js";
import { activityView, packagesView } from "./catalog.js";
import { instanceView, instancesView } from "./instances.js";
import { groupView, overviewView } from "./overview.js";

const REFRESH_MS = 10000;
const APP_KEY = "railcar.app";
const $ = (id) => document.getElementById(id);

const state = { role: null, apps: [], view: null, timer: null, routeSeq: 0 };

function notify(message, kind = "info") {
  const box = $("notice");
  box.textContent = message;
  box.className = `notice notice-${kind}`;
  box.hidden = !message;
}

// Any API failure lands here: a lost token logs out, a refused write explains the role.
function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    logout("The server no longer accepts this token (401). Log in again.");
  } else if (err instanceof ApiError && err.status === 403) {
    notify(`Not allowed (403): ${err.message}`, "error");
  } else {
    notify(`Error: ${err.message}`, "error");
  }
}

function currentApp() {
  const saved = sessionStorage.getItem(APP_KEY);
  const found = state.apps.find((a) => a.id === saved);
  return found ? found.id : state.apps.length ? state.apps[0].id : null;
}

function selectApp(id) {
  if (id && id !== sessionStorage.getItem(APP_KEY)) sessionStorage.setItem(APP_KEY, id);
  $("app-select").value = id || "";
  updateNav();
}

function updateNav() {
  const app = currentApp();
  const section = location.hash.split("/")[1] === "apps" ? location.hash.split("/")[3] : "";
  for (const link of $("nav").querySelectorAll("a")) {
    const name = link.dataset.section;
    link.href = name === "overview" ? "#/overview" : `#/apps/${app}/${name}`;
    const here =
      (name === "overview" && (location.hash === "#/overview" || section === "groups")) ||
      (section || "").split("?")[0] === name;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showLogin(message) {
  clearTimeout(state.timer);
  state.view = null;
  $("nav").hidden = true;
  $("session").hidden = true;
  $("view").replaceChildren();
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function logout(message) {
  setToken(null);
  state.role = null;
  notify("");
  showLogin(message);
}

async function start() {
  try {
    const me = await get("/me");
    state.role = me.role;
    state.apps = await get("/apps");
  } catch (err) {
    setToken(null);
    if (err instanceof ApiError && err.status === 401) {
      showLogin("This server does not know that token (401).");
    } else {
      showLogin(`Could not log in: ${err.message}`);
    }
    return;
  }
  $("login").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  const badge = $("role-badge");
  badge.textContent = state.role === "admin" ? "admin" : "read-only";
  badge.className = `badge role-${state.role === "admin" ? "admin" : "reader"}`;
  badge.title =
    state.role === "admin" ? "This token may change settings" : "This token can only look";
  const select = $("app-select");
  select.replaceChildren(
    ...state.apps.map((a) => {
      const option = document.createElement("option");
      option.value = a.id;
      option.textContent = a.name;
      return option;
    }),
  );
  selectApp(currentApp());
  if (!location.hash || location.hash === "#") location.hash = "#/overview";
  else route();
}

// #/overview · #/activity · #/apps/{app}/groups/{id} · #/apps/{app}/instances[/{id}][?query]
// · #/apps/{app}/packages · #/apps/{app}/activity
function parseRoute() {
  const [path, queryString] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(queryString || ""));
  if (parts[0] === "apps" && parts.length >= 3) {
    return { app: parts[1], section: parts[2], id: parts[3], params };
  }
  return { app: null, section: parts[0] || "overview", id: null, params };
}

const VIEWS = {
  overview: overviewView,
  groups: groupView,
  instances: (ctx, el, r) => (r.id ? instanceView(ctx, el, r) : instancesView(ctx, el, r)),
  packages: packagesView,
  activity: activityView,
};

async function route() {
  if (!token() || !state.role) return;
  clearTimeout(state.timer);
  const seq = ++state.routeSeq;
  const r = parseRoute();
  if (r.app && state.apps.some((a) => a.id === r.app)) selectApp(r.app);
  const render = VIEWS[r.section];
  // Each route draws into its own element: a slow view that finishes after the user moved on
  // writes into a detached node instead of over the new page.
  const container = document.createElement("div");
  $("view").replaceChildren(container);
  state.view = null;
  notify("");
  updateNav();
  if (!render) {
    container.append(`No such page: ${location.hash}`);
    return;
  }
  const ctx = {
    app: r.app || currentApp(),
    apps: state.apps,
    isAdmin: state.role === "admin",
    notify,
    failed,
    navigate: (hash) => {
      location.hash = hash;
    },
  };
  try {
    const view = (await render(ctx, container, r)) || null;
    if (seq !== state.routeSeq) return;
    state.view = view;
    stamp();
  } catch (err) {
    if (seq === state.routeSeq) failed(err);
  }
  if (seq === state.routeSeq) schedule();
}

function stamp() {
  $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function schedule() {
  clearTimeout(state.timer);
  if (!$("auto-refresh").checked) return;
  state.timer = setTimeout(async () => {
    if (state.view && state.view.refresh && !document.hidden) {
      try {
        await state.view.refresh();
        stamp();
      } catch (err) {
        failed(err);
      }
    }
    schedule();
  }, REFRESH_MS);
}

function init() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    setToken(value);
    start();
  });
  $("logout").addEventListener("click", () => logout("Logged out."));
  $("auto-refresh").addEventListener("change", schedule);
  $("app-select").addEventListener("change", (event) => {
    const id = event.target.value;
    selectApp(id);
    const r = parseRoute();
    if (!r.app) route();
    else if (r.section === "groups") location.hash = "#/overview";
    else location.hash = `#/apps/${encodeURIComponent(id)}/${r.section}`;
  });
  window.addEventListener("hashchange", route);
  if (token()) start();
  else showLogin();
}

init();
