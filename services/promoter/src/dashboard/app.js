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
  const lastHealthy = st.lastHealthy && st.desired && st.lastHealthy.tag !== st.desired.tag
    ? el("div", { class: "cell-sub" }, `last healthy ${st.lastHealthy.tag}`) : null;
  return el("td", { "data-stage": st.stage },
    tag, el("br"),
    el("span", { class: `badge b-${health}` }, health),
    st.held ? el("span", { class: "badge b-held", title: st.holdReason || "" }, "held") : null,
    waiting ? el("span", { class: "badge b-waiting" },
      `approvals ${st.approvalsGranted || 0}/${st.approvalsRequired}`) : null,
    lastHealthy,
    st.held && st.holdReason ? el("div", { class: "cell-sub" }, st.holdReason) : null);
}

async function loadMatrix() {
  const target = document.getElementById("matrix");
  try {
    const status = await getJson("/api/status");
    if (!changed("matrix", status)) return;
    const stages = status.stages || [];
    const apps = status.apps || [];
    if (apps.length === 0) return target.replaceChildren(el("p", { class: "muted" }, "No apps are configured."));
    const head = el("tr", {}, el("th", {}, "app"), stages.map((s) => el("th", {}, s)));
    const rows = apps.map((app) => {
      const byStage = Object.fromEntries((app.stages || []).map((st) => [st.stage, st]));
      return el("tr", { "data-app": app.app }, el("td", { class: "app" }, app.app), stages.map((s) => stageCell(byStage[s])));
    });
    target.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, rows)));
  } catch (e) { showError(target, e); }
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
    class: "approve", type: "button", "data-app": a.app, "data-stage": a.stage, "data-promotion": a.promotion_id,
  }, "Approve");
  button.addEventListener("click", () => approve(a, button));
  const approved = (a.approved_by || []).length ? ` · approved by ${a.approved_by.join(", ")}` : "";
  return el("div", { class: "approval", "data-promotion": a.promotion_id },
    el("div", { class: "what" },
      el("div", {}, el("strong", {}, a.app), " → ", el("strong", {}, a.stage), " ",
        el("span", { class: "tag" }, a.tag),
        el("span", { class: "badge b-waiting" }, `${a.granted}/${a.required}`)),
      el("div", { class: "cell-sub" },
        `commit ${(a.commit || "").slice(0, 10)} by ${a.author || "?"} · ${a.waiting_on || "waiting"}${approved}`),
      el("div", { class: "who" }, "May approve: ", el("span", { class: "approvers" }, whoMayApprove(a)),
        a.four_eyes ? el("span", { class: "muted" }, ` (not ${a.author})`) : null)),
    button);
}

async function loadApprovals() {
  const target = document.getElementById("approvals");
  try {
    const { approvals } = await getJson("/api/approvals");
    if (!changed("approvals", approvals)) return;
    if (!approvals.length) return target.replaceChildren(el("p", { class: "muted", id: "no-approvals" }, "Nothing waits for approval."));
    target.replaceChildren(...approvals.map(approvalCard));
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
      body: JSON.stringify({ app: a.app, stage: a.stage, promotionId: a.promotion_id }),
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
    const report = await getJson("/api/delivery?days=30");
    if (!changed("delivery", report)) return;
    document.getElementById("delivery-window").textContent = `last ${report.window_days} days, to the last stage`;
    const head = el("tr", {}, ["app", "deploys / day", "lead time", "change failure", "time to restore"].map((h) => el("th", {}, h)));
    const rows = report.apps.map((m) => el("tr", { "data-app": m.app },
      el("td", { class: "app" }, m.app, el("div", { class: "cell-sub" }, m.stage)),
      el("td", {}, m.deployments_per_day.toFixed(2), el("div", { class: "cell-sub" }, `${m.deployments} deploy${m.deployments === 1 ? "" : "s"}`)),
      el("td", {}, duration(m.lead_time_secs)),
      el("td", {}, m.change_failure_rate === null ? "—" : `${Math.round(m.change_failure_rate * 100)} %`,
        el("div", { class: "cell-sub" }, `${m.failures} failed`)),
      el("td", {}, duration(m.time_to_restore_secs),
        m.degraded_now ? el("span", { class: "badge b-degraded" }, "down now") : null)));
    target.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, rows)));
  } catch (e) { showError(target, e); }
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
  ];
  return parts.filter(Boolean).join(" · ");
}

function addEvent(event, fresh) {
  const feed = document.getElementById("feed");
  const type = (event.type || "").replace(/^io\.slipway\./, "").replace(/\.v\d+$/, "");
  const domain = type.split(".")[0];
  const time = event.time ? new Date(event.time).toLocaleTimeString() : "";
  const item = el("li", { class: fresh ? "fresh" : "", "data-type": type, "data-sequence": event.sequence },
    el("span", {}, time), el("span", { class: "seq" }, `#${event.sequence}`),
    el("span", { class: `type t-${domain}` }, type), el("span", {}, summary(event)));
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshAll, 250);
}

function refreshAll() {
  return Promise.all([loadMatrix(), loadApprovals(), loadDelivery()]);
}

function follow() {
  const conn = document.getElementById("conn");
  const source = new EventSource("/api/events");
  let replaying = true;
  source.onopen = () => { conn.className = "conn live"; conn.textContent = "live"; };
  source.onerror = () => { conn.className = "conn down"; conn.textContent = "reconnecting…"; };
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    addEvent(event, !replaying);
    if (/^io\.slipway\.(promotion|approval|hold|build)\./.test(event.type || "")) refreshSoon();
  };
  // Whatever arrives after the first quiet moment is live, not history.
  setTimeout(() => { replaying = false; }, 1000);
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

setupToken();
refreshAll();
follow();
setInterval(refreshAll, 15000);
