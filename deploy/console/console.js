/* motcua operator console: plain JavaScript, no framework, no network beyond the
 * front door. Every API path this page calls is a double-quoted string literal
 * beginning with /v1/ or /health/; tests/system/test_console.py finds them here and
 * checks each one through the front door. */
"use strict";

const REFRESH_MS = 10000;
const KEY_STORE = "motcua.operatorKey"; // sessionStorage only: gone when the tab closes
const SERVICES = ["intake", "routing", "interconnect", "payment", "postal", "notify"];
const OPEN_STATES = ["SUBMITTED", "RECEIVED", "AWAITING_PAYMENT", "IN_PROGRESS",
  "SUPPLEMENT_REQUESTED", "HANDED_OFF"];
const STATE_NAMES = {
  SUBMITTED: "Đã nộp, chờ tiếp nhận",
  RECEIVED: "Đã tiếp nhận",
  AWAITING_PAYMENT: "Chờ nộp phí",
  IN_PROGRESS: "Đang giải quyết",
  SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung",
  HANDED_OFF: "Chuyển cơ quan khác",
};
const OVERDUE_PAGE = 200; // the queue is ordered by due time: overdue dossiers come first

// API paths (keep them as literals: the system test reads them from this file).
const PATH_HEALTH = "/health/"; // + service name; no key
const PATH_TASKS = "/v1/tasks";
const PATH_NOTIFICATIONS = "/v1/notifications";
const PATH_STATS = "/v1/stats";

const $ = (id) => document.getElementById(id);

function getKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

/* An error with the HTTP status, and a message for the operator. */
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function explain(status, body) {
  const detail = body && body.error && body.error.message ? " (" + body.error.message + ")" : "";
  switch (status) {
    case 0: return "Không kết nối được tới cổng vào (front door). Kiểm tra mạng hoặc nginx.";
    case 401: return "Khóa API không hợp lệ, đã bị thu hồi hoặc chưa nhập (401). Hãy nhập lại khóa người vận hành.";
    case 403: return "Khóa này không có quyền người vận hành (operator) cho thông tin này (403)." + detail;
    case 503: return "Dịch vụ tạm thời không sẵn sàng (503); thử lại sau ít phút." + detail;
    default: return "Lỗi " + status + detail;
  }
}

/* GET a JSON document through the front door; throws ApiError. */
async function getJson(path, params, withKey) {
  const qs = params ? "?" + new URLSearchParams(params).toString() : "";
  const headers = { Accept: "application/json" };
  if (withKey) {
    const key = getKey();
    if (!key) throw new ApiError(401, explain(401));
    headers.Authorization = "Bearer " + key;
  }
  let resp;
  try {
    resp = await fetch(path + qs, { headers, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, explain(0));
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const err = new ApiError(resp.status, explain(resp.status, body));
    err.body = body;
    throw err;
  }
  return body;
}

// ---- small DOM helpers --------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function showError(id, message) {
  const p = $(id);
  p.textContent = message || "";
  p.hidden = !message;
}
function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString("vi-VN");
}
function fmtNum(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("vi-VN"); }
function localDate(d) {
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate());
}

// Errors of calls made with the key: 401/403 also go to the banner under the key form.
let authProblem = "";
function noteAuth(err) {
  if (err.status === 401 || err.status === 403) authProblem = err.message;
}

// ---- services -----------------------------------------------------------------------
async function loadServices() {
  const rows = await Promise.all(SERVICES.map(async (name) => {
    let r;
    try {
      r = { name, ok: true, body: await getJson(PATH_HEALTH + name, null, false) };
    } catch (e) {
      // 503 from a service carries the same readiness detail; from nginx, an error.
      const detail = e.body && e.body.status ? e.body : null;
      r = { name, ok: false, body: detail, error: e };
    }
    return r;
  }));
  fill($("services-body"), rows.map(({ name, ok, body, error }) => {
    let state;
    if (ok) state = el("span", { class: "up" }, "Sẵn sàng");
    else if (body) state = el("span", { class: "warn" }, "Chưa sẵn sàng");
    else state = el("span", { class: "down", title: error ? error.message : "" }, "Không liên lạc được");
    const db = body && body.database
      ? (body.database.ok ? "kết nối " : "MẤT KẾT NỐI ") + body.database.connected + "/" + body.database.pool +
        (body.database.waiting ? ", chờ " + body.database.waiting : "")
      : "—";
    const bus = body && body.bus ? (body.bus.bound ? "đã mở " : "CHƯA MỞ ") + (body.bus.bind || "") : "—";
    const pending = body && body.bus ? body.bus.outbox_pending : null;
    const peers = body && body.bus && Array.isArray(body.bus.peers)
      ? el("div", { class: "peers" }, ...body.bus.peers.map((p) => el("div", {},
        p.name + ": gửi " + p.sent + ", xác nhận " + p.acked + ", từ chối " + p.nacked +
        (p.last_ack_ms_ago === null || p.last_ack_ms_ago === undefined ? "" :
          ", xác nhận cuối " + Math.round(p.last_ack_ms_ago / 1000) + " giây trước"))))
      : "—";
    return el("tr", {}, el("td", {}, name), el("td", {}, state), el("td", {}, db), el("td", {}, bus),
      el("td", { class: "num" + (pending > 0 ? " warn" : "") }, fmtNum(pending)), el("td", {}, peers));
  }));
}

// ---- dead letters (failed notifications) --------------------------------------------
async function loadDeadLetters() {
  try {
    const page = await getJson(PATH_NOTIFICATIONS, { state: "failed", limit: 20 }, true);
    const items = Array.isArray(page) ? page : page.items || [];
    const total = Array.isArray(page) ? items.length : page.total;
    showError("dead-letters-error", "");
    $("dead-letters-total").textContent = "Tổng số thông báo gửi thất bại: " + fmtNum(total) +
      (total > items.length ? " (hiển thị " + items.length + " mới nhất)" : "");
    fill($("dead-letters-body"), items.map((n) => el("tr", {},
      el("td", {}, n.id), el("td", {}, n.dossier || "—"), el("td", {}, n.event || "—"),
      el("td", {}, n.channel || "—"), el("td", { class: "num" }, fmtNum(n.attempts)),
      el("td", {}, n.last_error || "—"), el("td", {}, fmtTime(n.created_at)))));
  } catch (e) {
    noteAuth(e);
    showError("dead-letters-error", e.message);
    $("dead-letters-total").textContent = "";
    fill($("dead-letters-body"), []);
  }
}

// ---- dossiers by state, overdue dossiers -----------------------------------------------
async function loadStates() {
  try {
    const totals = await Promise.all(OPEN_STATES.map((s) =>
      getJson(PATH_TASKS, { state: s, limit: 1 }, true).then((p) => p.total)));
    showError("states-error", "");
    const sum = totals.reduce((a, b) => a + b, 0);
    fill($("states-body"), OPEN_STATES.map((s, i) => el("tr", {},
      el("td", {}, STATE_NAMES[s] + " (" + s + ")"), el("td", { class: "num" }, fmtNum(totals[i]))))
      .concat([el("tr", {}, el("th", {}, "Tổng số hồ sơ đang mở"), el("th", { class: "num" }, fmtNum(sum)))]));
  } catch (e) {
    noteAuth(e);
    showError("states-error", e.message);
    fill($("states-body"), []);
  }
}

async function loadOverdue() {
  try {
    const page = await getJson(PATH_TASKS, { limit: OVERDUE_PAGE }, true);
    const late = page.items.filter((t) => t.overdue);
    showError("overdue-error", "");
    const capped = late.length === page.items.length && page.total > page.items.length;
    $("overdue-total").textContent = late.length === 0
      ? "Không có hồ sơ quá hạn."
      : "Số hồ sơ quá hạn: " + (capped ? "ít nhất " : "") + fmtNum(late.length) + ", hạn sớm nhất trước.";
    fill($("overdue-body"), late.map((t) => el("tr", {},
      el("td", {}, t.code), el("td", {}, t.procedure_name || t.procedure),
      el("td", {}, STATE_NAMES[t.state] || t.state), el("td", { class: "down" }, fmtTime(t.due_at)),
      el("td", {}, t.step ? t.step.name : "—"), el("td", {}, t.step ? t.step.agency : "—"))));
  } catch (e) {
    noteAuth(e);
    showError("overdue-error", e.message);
    $("overdue-total").textContent = "";
    fill($("overdue-body"), []);
  }
}

// ---- statistics report and its chart -----------------------------------------------
const STAT_ROWS = [
  ["received_total", "Hồ sơ tiếp nhận trong kỳ"],
  ["received_online", "— trực tuyến"],
  ["received_direct", "— trực tiếp"],
  ["received_postal", "— qua bưu chính"],
  ["carried_over", "Hồ sơ kỳ trước chuyển qua"],
  ["resolved_total", "Đã giải quyết"],
  ["resolved_early", "— trước hạn"],
  ["resolved_on_time", "— đúng hạn"],
  ["resolved_late", "— quá hạn"],
  ["in_progress_total", "Đang giải quyết"],
  ["in_progress_on_time", "— trong hạn"],
  ["in_progress_overdue", "— quá hạn"],
  ["withdrawn", "Rút hồ sơ"],
  ["refused", "Từ chối giải quyết"],
  ["on_time_rate", "Tỷ lệ đúng hạn (%)"],
  ["online_rate", "Tỷ lệ trực tuyến (%)"],
  ["level3", "Dịch vụ công mức 3"],
  ["level4", "Dịch vụ công mức 4"],
];
// The bars of the chart: [field, label, colour]
const CHART_BARS = [
  ["received_total", "Tiếp nhận", "#3b6ea8"],
  ["carried_over", "Kỳ trước chuyển qua", "#7a8ca3"],
  ["resolved_early", "Giải quyết trước hạn", "#1f8a4c"],
  ["resolved_on_time", "Giải quyết đúng hạn", "#5cb85c"],
  ["resolved_late", "Giải quyết quá hạn", "#c0392b"],
  ["in_progress_on_time", "Đang giải quyết, trong hạn", "#e0a526"],
  ["in_progress_overdue", "Đang giải quyết, quá hạn", "#8b1a1a"],
  ["withdrawn", "Rút hồ sơ", "#999999"],
  ["refused", "Từ chối", "#555555"],
];

/* A horizontal bar chart as inline SVG. */
function drawChart(report) {
  const NS = "http://www.w3.org/2000/svg";
  const labelW = 200, barW = 420, rowH = 26, valueW = 70;
  const max = Math.max(1, ...CHART_BARS.map(([f]) => Number(report[f]) || 0));
  const svg = document.createElementNS(NS, "svg");
  const width = labelW + barW + valueW, height = rowH * CHART_BARS.length + 10;
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Biểu đồ báo cáo thống kê");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.appendChild(n);
  };
  CHART_BARS.forEach(([field, label, colour], i) => {
    const v = Number(report[field]) || 0;
    const y = 5 + i * rowH;
    add("text", { x: labelW - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, label);
    add("rect", { x: labelW, y: y + 3, width: Math.max(v > 0 ? 2 : 0, (v / max) * barW), height: rowH - 8, fill: colour });
    add("text", { x: labelW + (v / max) * barW + 6, y: y + rowH / 2 + 4 }, fmtNum(v));
  });
  $("stats-chart").replaceChildren(svg);
}

async function loadStats() {
  const params = { from: $("stats-from").value, to: $("stats-to").value };
  const agency = $("stats-agency").value.trim();
  if (agency) params.agency = agency;
  try {
    const r = await getJson(PATH_STATS, params, true);
    showError("stats-error", "");
    drawChart(r);
    fill($("stats-body"), [el("tr", {}, el("th", {}, "Cơ quan, kỳ báo cáo"),
      el("th", {}, (r.agency || "Toàn tỉnh") + ", " + r.from + " → " + r.to))]
      .concat(STAT_ROWS.map(([f, label]) => el("tr", {}, el("td", {}, label), el("td", { class: "num" }, fmtNum(r[f]))))));
  } catch (e) {
    noteAuth(e);
    let msg = e.message;
    if (e.status === 400 || e.status === 404) msg = "Tham số báo cáo không hợp lệ: " + (e.body && e.body.error ? e.body.error.message : e.status);
    showError("stats-error", msg);
    $("stats-chart").replaceChildren();
    fill($("stats-body"), []);
  }
}

// ---- refresh loop ---------------------------------------------------------------------
let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  authProblem = "";
  try {
    const withKey = getKey()
      ? [loadDeadLetters(), loadStates(), loadOverdue(), loadStats()]
      : [];
    if (!getKey()) authProblem = "Chưa có khóa API: nhập khóa người vận hành để xem hồ sơ, thư lỗi và thống kê.";
    await Promise.all([loadServices(), ...withKey]);
    showError("auth-error", authProblem);
    $("status").textContent = "Cập nhật lúc " + new Date().toLocaleTimeString("vi-VN") +
      "; tự làm mới mỗi " + REFRESH_MS / 1000 + " giây.";
  } finally {
    refreshing = false;
  }
}

function init() {
  const today = new Date();
  $("stats-from").value = localDate(new Date(today.getFullYear(), 0, 1));
  $("stats-to").value = localDate(today);
  $("key").value = getKey();
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
    refresh();
  });
  $("key-clear").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    $("key").value = "";
    for (const id of ["dead-letters-body", "states-body", "overdue-body", "stats-body"]) fill($(id), []);
    $("stats-chart").replaceChildren();
    $("dead-letters-total").textContent = "";
    $("overdue-total").textContent = "";
    refresh();
  });
  $("stats-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (getKey()) loadStats();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
