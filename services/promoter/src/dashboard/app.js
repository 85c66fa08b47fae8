// The Slipway dashboard: renders /api/status, /api/approvals and /api/delivery, follows
// /api/events (server-sent events, proto3 JSON) and refreshes the views when an event about
// the pipeline arrives; approves with the token kept in localStorage. DOM is built with
// textContent only, since event data carries user text.
"use strict";

const TOKEN_KEY = "slipway.token";
const ENVELOPE = new Set(["id", "type", "source", "subject", "time", "traceparent", "sequence"]);
const FEED_MAX = 200;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

// The last data each view was drawn from: an unchanged answer is not redrawn, so a button
// does not vanish under the pointer while the page refreshes.
const drawn = new Map();
function changed(view, data) {
  const json = JSON.stringify(data);
  if (drawn.get(view) === json) return false;
  drawn.set(view, json);
  return true;
}

function showError(target, error) {
  drawn.clear();
  target.replaceChildren(el("p", { class: "result err" }, String(error.message || error)));
}

// ---------------------------------------------------------------- apps × stages

const HEALTH = {
  HEALTH_HEALTHY: "healthy", HEALTH_PROGRESSING: "progressing",
  HEALTH_DEGRADED: "degraded", HEALTH_UNKNOWN: "unknown",
};

function stageCell(st) {
  if (!st) return el("td", { class: "muted" }, "—");
  const health = HEALTH[st.health] || "unknown";
  const tag = st.desired ? el("span", { class: "tag" }, st.desired.tag) : el("span", { class: "muted" }, "not deployed");
  const waiting = (st.approvalsRequired || 0) > 0;
  // The scan policy's blocker names the findings, expired allow entries and how to allow them.
  const scan = (st.waitingOn || "").startsWith("scan:") ? st.waitingOn : null;
  const lastHealthy = st.lastHealthy && st.desired && st.lastHealthy.tag !== st.desired.tag
    ? el("div", { class: "cell-sub" }, `last healthy ${st.lastHealthy.tag}`) : null;
  return el("td", { "data-stage": st.stage },
    tag, el("br"),
    el("span", { class: `badge b-${health}` }, health),
    st.held ? el("span", { class: "badge b-held", title: st.holdReason || "" }, "held") : null,
    waiting ? el("span", { class: "badge b-waiting" },
      `approvals ${st.approvalsGranted || 0}/${st.approvalsRequired}`) : null,
    scan ? el("span", { class: "badge b-scan", title: scan }, "scan-blocked") : null,
    lastHealthy,
    st.held && st.holdReason ? el("div", { class: "cell-sub" }, st.holdReason) : null,
    scan ? el("div", { class: "cell-sub scan-blocker" }, scan) : null);
}

// The matrix is read a page at a time, filtered on the server: 10,000 apps stay one page.
const PAGE_SIZE = 50;
const pages = { tokens: [""], index: 0, next: "" };
// Answers can overtake each other while filters change: only the newest request's is drawn.
let matrixRequest = 0;
// The apps of the page drawn, whose delivery metrics the table shows.
let pageApps = [];

function matrixQuery() {
  const value = (id) => (document.getElementById(id) || {}).value || "";
  const params = new URLSearchParams({ page_size: PAGE_SIZE, page_token: pages.tokens[pages.index] });
  for (const [key, id] of [["q", "f-search"], ["team", "f-team"], ["stage", "f-stage"], ["state", "f-state"]]) {
    if (value(id).trim()) params.set(key, value(id).trim());
  }
  const mine = document.getElementById("f-mine");
  if (mine && mine.checked) params.set("mine", "true");
  return params;
}

async function loadMatrix() {
  const target = document.getElementById("matrix");
  const request = ++matrixRequest;
  try {
    const params = matrixQuery();
    const token = localStorage.getItem(TOKEN_KEY) || "";
    const headers = params.has("mine") && token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(`/api/status?${params}`, { cache: "no-store", headers });
    const status = await response.json().catch(() => ({}));
    if (request !== matrixRequest) return;
    if (!response.ok) throw new Error(status.error || `HTTP ${response.status}`);
    pages.next = status.nextPageToken || "";
    const first = pages.index * PAGE_SIZE;
    const apps = status.apps || [];
    document.getElementById("page-info").textContent =
      `${apps.length ? first + 1 : 0}–${first + apps.length} of ${status.total || 0}`;
    document.getElementById("f-prev").disabled = pages.index === 0;
    document.getElementById("f-next").disabled = !pages.next;
    const stages = status.stages || [];
    const names = apps.map((a) => a.app);
    if (names.join(",") !== pageApps.join(",")) { pageApps = names; loadDelivery(); }
    const select = document.getElementById("f-stage");
    if (select.options.length === 1) stages.forEach((st) => select.append(el("option", { value: st }, st)));
    if (!changed("matrix", status)) return;
    if (apps.length === 0) return target.replaceChildren(el("p", { class: "muted" }, "No app matches."));
    const head = el("tr", {}, el("th", {}, "app"), stages.map((st) => el("th", {}, st)));
    const rows = apps.map((app) => {
      const byStage = Object.fromEntries((app.stages || []).map((st) => [st.stage, st]));
      const link = el("a", { href: `/dashboard/app/${encodeURIComponent(app.app)}` }, app.app);
      return el("tr", { "data-app": app.app }, el("td", { class: "app" }, link), stages.map((st) => stageCell(byStage[st])));
    });
    target.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, rows)));
  } catch (e) { showError(target, e); }
}

function setupFilters() {
  const restart = () => { pages.tokens = [""]; pages.index = 0; loadMatrix(); };
  let typing = null;
  for (const id of ["f-search", "f-team"]) {
    document.getElementById(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(restart, 250); });
  }
  for (const id of ["f-stage", "f-state", "f-mine"]) document.getElementById(id).addEventListener("change", restart);
  document.getElementById("filters").addEventListener("submit", (e) => { e.preventDefault(); restart(); });
  document.getElementById("f-next").addEventListener("click", () => {
    if (!pages.next) return;
    pages.tokens[pages.index + 1] = pages.next;
    pages.index += 1;
    loadMatrix();
  });
  document.getElementById("f-prev").addEventListener("click", () => {
    if (pages.index === 0) return;
    pages.index -= 1;
    loadMatrix();
  });
  document.getElementById("trend-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadTrends(document.getElementById("trends"), trendScope());
  });
  document.getElementById("feed-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    document.getElementById("feed").replaceChildren();
    follow();
  });
}

// ---------------------------------------------------------------- approvals

function whoMayApprove(a) {
  const who = [...(a.approvers || [])];
  for (const [team, members] of Object.entries(a.teams || {})) who.push(`team ${team} (${members.join(", ")})`);
  if ((a.admins || []).length) who.push(`admins (${a.admins.join(", ")})`);
  return who.join(", ") || "nobody";
}

function approvalCard(a) {
  const button = el("button", {
    class: "approve", type: "button", "data-app": a.app, "data-stage": a.stage, "data-promotion": a.promotionId,
  }, "Approve");
  button.addEventListener("click", () => approve(a, button));
  const approved = (a.approvedBy || []).length ? ` · approved by ${a.approvedBy.join(", ")}` : "";
  return el("div", { class: "approval", "data-promotion": a.promotionId },
    el("div", { class: "what" },
      el("div", {}, el("strong", {}, a.app), " → ", el("strong", {}, a.stage), " ",
        el("span", { class: "tag" }, a.tag),
        el("span", { class: "badge b-waiting" }, `${a.granted}/${a.required}`)),
      el("div", { class: "cell-sub" },
        `commit ${(a.commit || "").slice(0, 10)} by ${a.author || "?"} · ${a.waitingOn || "waiting"}${approved}`),
      el("div", { class: "who" }, "May approve: ", el("span", { class: "approvers" }, whoMayApprove(a)),
        a.fourEyes ? el("span", { class: "muted" }, ` (not ${a.author})`) : null)),
    button);
}

async function loadApprovals() {
  const target = document.getElementById("approvals");
  try {
    const answer = await getJson("/api/approvals?limit=50");
    const approvals = answer.approvals;
    if (!changed("approvals", answer)) return;
    if (!approvals.length) return target.replaceChildren(el("p", { class: "muted", id: "no-approvals" }, "Nothing waits for approval."));
    const more = answer.total > approvals.length
      ? el("p", { class: "muted" }, `${answer.total - approvals.length} more wait: filter the apps by state “waiting”.`) : null;
    target.replaceChildren(...approvals.map(approvalCard), ...(more ? [more] : []));
  } catch (e) { showError(target, e); }
}

async function approve(a, button) {
  const result = document.getElementById("approve-result");
  const token = localStorage.getItem(TOKEN_KEY) || "";
  if (!token) {
    result.className = "result err";
    result.textContent = "Enter and save an API token first.";
    return;
  }
  button.disabled = true;
  try {
    const response = await fetch("/api/approve", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ app: a.app, stage: a.stage, promotionId: a.promotionId }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    result.className = "result ok";
    result.textContent = `Approved ${a.app} → ${a.stage} (${body.granted || 0}/${body.required || 0}).`;
  } catch (e) {
    result.className = "result err";
    result.textContent = `Approval failed: ${e.message}`;
  } finally {
    button.disabled = false;
    refreshSoon();
  }
}

// ---------------------------------------------------------------- delivery metrics

function duration(secs) {
  if (secs === null || secs === undefined) return "—";
  if (secs < 60) return `${secs.toFixed(1)} s`;
  if (secs < 3600) return `${(secs / 60).toFixed(1)} min`;
  if (secs < 86400) return `${(secs / 3600).toFixed(1)} h`;
  return `${(secs / 86400).toFixed(1)} d`;
}

async function loadDelivery() {
  const target = document.getElementById("delivery");
  try {
    // The apps of the matrix page shown, not every app: the table stays a page long.
    if (!pageApps.length) return target.replaceChildren(el("p", { class: "muted" }, "No app on this page."));
    const apps = encodeURIComponent(pageApps.join(","));
    const report = await getJson(`/api/delivery?days=30&apps=${apps}`);
    if (!changed("delivery", report)) return;
    document.getElementById("delivery-window").textContent =
      `last ${report.windowDays} days, to the last stage, for the apps of the page above`;
    const head = el("tr", {}, ["app", "deploys / day", "lead time", "change failure", "time to restore"].map((h) => el("th", {}, h)));
    const rows = report.apps.map((m) => el("tr", { "data-app": m.app },
      el("td", { class: "app" }, m.app, el("div", { class: "cell-sub" }, m.stage)),
      el("td", {}, m.deploymentsPerDay.toFixed(2), el("div", { class: "cell-sub" }, `${m.deployments} deploy${m.deployments === 1 ? "" : "s"}`)),
      el("td", {}, duration(m.leadTimeSecs)),
      el("td", {}, m.changeFailureRate === null ? "—" : `${Math.round(m.changeFailureRate * 100)} %`,
        el("div", { class: "cell-sub" }, `${m.failures} failed`)),
      el("td", {}, duration(m.timeToRestoreSecs),
        m.degradedNow ? el("span", { class: "badge b-degraded" }, "down now") : null)));
    target.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, rows)));
  } catch (e) { showError(target, e); }
}

// ---------------------------------------------------------------- delivery trends

// The four charts (SVG drawn by the server) of `scope` (`app=x`, `team=y` or ""), each with
// its metric's definition.
async function loadTrends(target, scope) {
  const query = `${scope ? `${scope}&` : ""}weeks=12`;
  try {
    const trends = await getJson(`/api/trends?${query}`);
    target.replaceChildren(...trends.metrics.map((m) => el("figure", { "data-metric": m.metric },
      el("img", { src: `/api/charts/${m.metric}.svg?${query}&t=${Date.now()}`, alt: `${m.title}, ${trends.scope}` }),
      el("figcaption", { class: "cell-sub" }, el("strong", {}, m.title), `: ${m.definition}`))));
  } catch (e) { showError(target, e); }
}

function trendScope() {
  const app = document.getElementById("trend-app").value.trim();
  const team = document.getElementById("trend-team").value.trim();
  if (app) return `app=${encodeURIComponent(app)}`;
  return team ? `team=${encodeURIComponent(team)}` : "";
}

// ---------------------------------------------------------------- live events

function payloadOf(event) {
  const key = Object.keys(event).find((k) => !ENVELOPE.has(k));
  return key ? event[key] : {};
}

function summary(event) {
  const p = payloadOf(event);
  const image = p.image && p.image.tag ? p.image.tag : p.tag;
  const parts = [
    p.app, p.stage || p.env, image,
    p.actor && `by ${p.actor}`,
    p.granted !== undefined && p.required !== undefined ? `${p.granted}/${p.required}` : null,
    p.reason, p.message, p.healthStatus,
    // verification.*: one measurement of a check, or the verdict of them all.
    p.check, p.phase, p.value, p.verdict,
    p.checks && p.checks.map((c) => `${c.check} ${c.verdict} (${c.measurements})`).join(", "),
  ];
  return parts.filter(Boolean).join(" · ");
}

// The W3C trace id of an event's traceparent (00-<trace id>-<span id>-<flags>): the push's
// trace, to open in Jaeger or Tempo.
function traceId(event) {
  const parts = (event.traceparent || "").split("-");
  return parts.length === 4 && /^[0-9a-f]{32}$/.test(parts[1]) ? parts[1] : "";
}

function addEvent(event, fresh) {
  const feed = document.getElementById("feed");
  const type = (event.type || "").replace(/^io\.slipway\./, "").replace(/\.v\d+$/, "");
  const domain = type.split(".")[0];
  const time = event.time ? new Date(event.time).toLocaleTimeString() : "";
  const item = el("li", { class: fresh ? "fresh" : "", "data-type": type, "data-sequence": event.sequence },
    el("span", {}, time), el("span", { class: "seq" }, `#${event.sequence}`),
    el("span", { class: `type t-${domain}` }, type), el("span", {}, summary(event)),
    el("span", { class: "trace", title: "trace id: open it in Jaeger or Tempo" }, traceId(event)));
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshAll, 250);
}

function refreshAll() {
  // The matrix first: the delivery table follows the apps of its page.
  return Promise.all([loadMatrix().then(loadDelivery), loadApprovals()]);
}

let feedSource = null;
function follow() {
  const conn = document.getElementById("conn");
  if (feedSource) feedSource.close();
  const params = new URLSearchParams();
  const app = document.getElementById("feed-app").value.trim();
  const domain = document.getElementById("feed-domain").value;
  if (app) params.set("app", app);
  if (domain) params.set("domain", domain);
  const source = new EventSource(`/api/events?${params}`);
  feedSource = source;
  let replaying = true;
  source.onopen = () => { conn.className = "conn live"; conn.textContent = "live"; };
  source.onerror = () => { conn.className = "conn down"; conn.textContent = "reconnecting…"; };
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    addEvent(event, !replaying);
    if (/^io\.slipway\.(promotion|approval|hold|build)\./.test(event.type || "")) refreshSoon();
  };
  // The server says where the history it replays ends; what follows is live.
  source.addEventListener("live", () => { replaying = false; });
}

function setupToken() {
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  const show = () => { state.textContent = localStorage.getItem(TOKEN_KEY) ? "token saved" : "no token"; };
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
    show();
  });
  show();
}

// The app page loads this file for its helpers and starts itself.
if (document.getElementById("matrix")) {
  setupToken();
  setupFilters();
  refreshAll();
  follow();
  loadTrends(document.getElementById("trends"), "");
  setInterval(refreshAll, 15000);
}
