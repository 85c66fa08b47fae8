// The app page (/dashboard/app/<name>): draws /api/apps/<name> as a stage graph with the
// buttons, the commits a waiting version brings, each stage's history, the app's builds with a
// live log (/api/builds/<id>/log, server-sent), and the delivery charts (server-side SVG).
// Loaded after app.js, whose helpers (el, getJson, duration, setupToken, HEALTH) it uses.
"use strict";

const APP = decodeURIComponent(location.pathname.split("/").pop());
const ACTIONS = [["approve", "Approve"], ["reject", "Reject"], ["promote", "Promote"],
  ["rollback", "Rollback"], ["hold", "Hold"], ["release", "Release"]];

function versionLabel(v, cls) {
  const full = `${v.tag} · ${v.commit}${v.digest ? ` · ${v.digest}` : ""}`;
  return el("span", { class: `tag ${cls || ""}`, title: full }, `${v.tag} (${v.shortCommit})`);
}

// What each button sends: the admin API's request message, in proto3 JSON.
function requestOf(action, st) {
  const body = { app: APP, stage: st.stage };
  if ((action === "approve" || action === "reject") && st.pending) body.promotionId = st.pending.promotionId;
  if (action === "promote" && st.pending) body.tag = st.pending.version.tag;
  if (action !== "approve") body.reason = `from the dashboard (${action})`;
  return body;
}

async function act(action, st, button) {
  const result = document.getElementById("action-result");
  const token = localStorage.getItem(TOKEN_KEY) || "";
  button.disabled = true;
  try {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(`/api/commands/${action}`,
      { method: "POST", headers, body: JSON.stringify(requestOf(action, st)) });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status}: ${body.error || "refused"}`);
    result.className = "result ok";
    result.textContent = `${action} ${APP} → ${st.stage}: done${body.promotionId ? ` (${body.promotionId})` : ""}.`;
  } catch (e) {
    result.className = "result err";
    result.textContent = `${action} ${APP} → ${st.stage} refused: ${e.message}`;
  } finally {
    button.disabled = false;
    setTimeout(loadApp, 300);
  }
}

function stageBox(st) {
  const s = st.status || {};
  const health = HEALTH[s.health] || "unknown";
  const buttons = ACTIONS.map(([action, label]) => {
    const b = el("button", { type: "button", class: `act act-${action}`, "data-action": action, "data-stage": st.stage }, label);
    b.addEventListener("click", () => act(action, st, b));
    return b;
  });
  const approvals = st.approvalsRequired ? ` · ${st.approvalsRequired} approval${st.approvalsRequired === 1 ? "" : "s"}` : "";
  return el("div", { class: "stage", "data-stage": st.stage },
    el("div", { class: "stage-name" }, st.stage, el("span", { class: "muted" }, ` ${st.policy}${approvals}`)),
    el("div", { class: "running" }, st.running ? versionLabel(st.running, "running-version") : el("span", { class: "muted" }, "not deployed")),
    el("span", { class: `badge b-${health}` }, health),
    s.held ? el("span", { class: "badge b-held" }, "held") : null,
    el("div", { class: "cell-sub verification" }, `verification: ${st.verification}`),
    el("div", { class: "cell-sub scan" }, `scan: ${st.scan}`),
    st.pending ? el("div", { class: "pending" }, "waiting: ", versionLabel(st.pending.version, "pending-version"),
      st.approvalsRequired ? ` approvals ${st.pending.approvedBy.length}/${st.approvalsRequired}` : "") : null,
    st.blocker ? el("div", { class: "blocker" }, st.blocker) : null,
    el("div", { class: "cell-sub may-act" }, "may act: ", st.mayAct.join(", ") || "nobody named"),
    el("div", { class: "buttons" }, buttons));
}

function commitsOf(st) {
  if (!st.pending) return null;
  const c = st.commits;
  const head = el("h3", {}, `${st.stage}: `, versionLabel(st.pending.version), " over ",
    st.running ? versionLabel(st.running) : "nothing running");
  if (!c) return el("div", { class: "commits", "data-stage": st.stage }, head,
    el("p", { class: "muted" }, "No commits to compare (nothing runs there, or another repository)."));
  const rows = c.commits.map((m) => el("li", { "data-sha": m.sha },
    el("a", { href: m.url, class: "sha", title: m.sha }, m.shortSha), " ",
    el("span", { class: "message" }, m.message.split("\n")[0]), " ",
    el("span", { class: "muted author" }, `— ${m.author}`)));
  return el("div", { class: "commits", "data-stage": st.stage }, head, el("ol", {}, rows),
    c.complete ? null : el("p", { class: "muted" }, "The recorded pushes end here: older commits are not known to Slipway."));
}

function historyOf(st) {
  const rows = st.history.map((h) => el("tr", { class: h.rollback ? "rollback" : "", "data-promotion": h.promotionId },
    el("td", {}, versionLabel(h.version), h.current ? el("span", { class: "badge b-healthy" }, "running") : null,
      h.rollback ? el("span", { class: "badge b-degraded" }, "rollback") : null),
    el("td", {}, new Date(h.deployedAt).toLocaleString()),
    el("td", {}, `${h.actor} (${h.trigger})`, h.reason ? el("div", { class: "cell-sub" }, h.reason) : null),
    el("td", {}, duration(h.stayedSecs), h.current ? " so far" : ""),
    el("td", {}, h.state)));
  const head = el("tr", {}, ["version", "deployed", "by", "stayed", "state"].map((x) => el("th", {}, x)));
  return el("div", { class: "history", "data-stage": st.stage }, el("h3", {}, st.stage),
    rows.length ? el("table", {}, el("thead", {}, head), el("tbody", {}, rows)) : el("p", { class: "muted" }, "Nothing deployed yet."));
}

const builds = new Map();
function showBuilds() {
  const list = document.getElementById("builds");
  const items = [...builds.values()].sort((a, b) => (b.at || "").localeCompare(a.at || "")).map((b) => {
    const link = el("a", { href: "#", "data-build": b.id }, b.id);
    link.addEventListener("click", (e) => { e.preventDefault(); openLog(b.id); });
    return el("li", {}, link, el("span", { class: "muted" }, ` ${b.label}`));
  });
  list.replaceChildren(...items);
}

let logSource = null;
function openLog(buildId) {
  if (logSource) logSource.close();
  const pre = document.getElementById("build-log");
  const state = document.getElementById("log-state");
  document.getElementById("log-build").textContent = buildId;
  pre.textContent = "";
  state.textContent = "following…";
  logSource = new EventSource(`/api/builds/${encodeURIComponent(buildId)}/log`);
  logSource.addEventListener("lines", (m) => {
    const { lines } = JSON.parse(m.data);
    pre.append(document.createTextNode(lines.map((l) => `${l}\n`).join("")));
    pre.scrollTop = pre.scrollHeight;
  });
  logSource.addEventListener("end", (m) => {
    const end = JSON.parse(m.data);
    state.textContent = `build ${end.outcome}${end.reason ? `: ${end.reason}` : ""}`;
    logSource.close();
  });
  logSource.addEventListener("missing", () => { state.textContent = "no log for this build (yet)"; logSource.close(); });
}

async function loadApp() {
  const graph = document.getElementById("graph");
  try {
    const view = await getJson(`/api/apps/${encodeURIComponent(APP)}`);
    document.getElementById("pipeline-name").textContent =
      [view.pipeline, view.team && `team ${view.team}`, view.removed && "removed from the catalog"].filter(Boolean).join(" · ");
    if (!changed("app", view)) return;
    const boxes = [];
    view.stages.forEach((st, i) => {
      if (i > 0) boxes.push(el("div", { class: "arrow" }, "→"));
      boxes.push(stageBox(st));
    });
    graph.replaceChildren(...boxes);
    const commits = view.stages.map(commitsOf).filter(Boolean);
    document.getElementById("commits").replaceChildren(...(commits.length ? commits
      : [el("p", { class: "muted" }, "No version waits in any stage.")]));
    document.getElementById("history").replaceChildren(...view.stages.map(historyOf));
    for (const b of view.builds) {
      if (!builds.has(b.buildId)) builds.set(b.buildId, { id: b.buildId, at: b.startedAt, label: `${b.tag} (${b.shortCommit})` });
    }
    showBuilds();
  } catch (e) { showError(graph, e); }
}

// Builds the builders announced (running and failed ones have no run in the promoter).
async function loadBuilds() {
  try {
    const { builds: announced } = await getJson(`/api/apps/${encodeURIComponent(APP)}/builds`);
    for (const b of announced) {
      const label = `${b.state}${b.reason ? `: ${b.reason}` : ""} (${(b.commit || "").slice(0, 7)})`;
      builds.set(b.buildId, { id: b.buildId, at: b.startedAt, label });
    }
    showBuilds();
  } catch (e) { document.getElementById("log-state").textContent = `builds: ${e.message}`; }
}

function loadCharts() {
  return loadTrends(document.getElementById("charts"), `app=${encodeURIComponent(APP)}`);
}

// Builds of this app announced on the event stream (a build that runs has no run yet).
function followApp() {
  const conn = document.getElementById("conn");
  const source = new EventSource(`/api/events?app=${encodeURIComponent(APP)}`);
  source.onopen = () => { conn.className = "conn live"; conn.textContent = "live"; };
  source.onerror = () => { conn.className = "conn down"; conn.textContent = "reconnecting…"; };
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    const started = event.buildStarted;
    if (started && !builds.has(started.buildId)) {
      builds.set(started.buildId, { id: started.buildId, at: event.time, label: `running (${(started.commitSha || "").slice(0, 7)})` });
      showBuilds();
    }
    if (event.buildSucceeded || event.buildFailed) loadBuilds();
    if (/^io\.slipway\.(promotion|approval|hold|build|verification)\./.test(event.type || "")) setTimeout(loadApp, 250);
  };
}

document.getElementById("app-name").textContent = APP;
document.title = `Slipway · ${APP}`;
setupToken();
loadApp();
loadCharts();
loadBuilds();
followApp();
setInterval(loadApp, 15000);
setInterval(loadCharts, 60000);
