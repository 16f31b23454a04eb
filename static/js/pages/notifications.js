// notifications.html: the user's saved notifications, newest first (GET
// /api/v1/notifications), new ones live from `notification` on user:<id>; tapping one
// marks it read and opens its link; 全部已读. docs/pages.md "Notifications".

import { KPay } from "../kpay.js";
import { $, bindConnectionBadge, el, formatTime, show, showError, whileBusy } from "../ui.js";
import { onUserEvent } from "../user-channel.js";

const PAGE = 20;
const kpay = new KPay();
const socket = kpay.socket();
const errorBox = $("#error");
const list = $("#notice-list");
const shown = new Map(); // id -> the notification as last drawn
// While the first page is read again, the notices that arrive live: newer than what
// the read may have seen, they are drawn again over its answer (one Map per read).
const arrivingDuringReads = new Set();
let nextCursor = null;
let unread = 0;

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized");
  location.href = "/";
});

/** A link the server saved is a path inside kpay; checked again before following it. */
export function safeLink(link) {
  return typeof link === "string" && /^\/(?![/\\])/.test(link) && !/[\s\\]/.test(link)
    ? link : null;
}

function renderCounts() {
  $("#unread-text").textContent = unread > 0 ? `${unread} 条未读` : "";
  $("#read-all").disabled = unread <= 0;
  show($("#notice-empty"), shown.size === 0);
}

function item(notice) {
  const link = safeLink(notice.link);
  const body = el("span", { class: "notice-text" },
    el("span", { class: "notice-title" }, notice.title),
    notice.body ? el("span", { class: "notice-body" }, notice.body) : null,
    el("span", { class: "notice-time" }, formatTime(notice.created_at)));
  const row = el(link ? "a" : "div", {
    class: "notice-row", href: link || null, "data-id": notice.id,
    "data-read": String(notice.read),
  }, el("span", { class: "dot", "aria-hidden": "true" }),
  notice.read ? null : el("span", { class: "visually-hidden" }, "未读："), body);
  row.addEventListener("click", (event) => open(event, notice, link));
  return el("li", { "data-id": notice.id }, row);
}

function draw(notice, { prepend = false } = {}) {
  const existing = list.querySelector(`li[data-id="${CSS.escape(notice.id)}"]`);
  const node = item(notice);
  shown.set(notice.id, notice);
  if (existing) existing.replaceWith(node);
  else if (prepend) list.prepend(node);
  else list.append(node);
}

async function markRead(body) {
  const result = await kpay.post("/api/v1/notifications/read", body);
  unread = result.unread;
  return result;
}

async function open(event, notice, link) {
  event.preventDefault();
  if (!notice.read) {
    try {
      await markRead({ ids: [notice.id] });
      notice.read = true;
      draw(notice);
      renderCounts();
    } catch (error) {
      if (!link) showError(errorBox, error); // with a link, opening it matters more
    }
  }
  if (link) location.href = link;
}

async function loadPage(first) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (!first && nextCursor) query.set("cursor", nextCursor);
  const arrived = new Map();
  if (first) arrivingDuringReads.add(arrived);
  let page;
  try {
    page = await kpay.get(`/api/v1/notifications?${query}`);
  } finally {
    arrivingDuringReads.delete(arrived);
  }
  if (first) {
    list.replaceChildren();
    shown.clear();
  }
  for (const notice of page.notifications) draw(notice);
  unread = page.unread;
  for (const notice of arrived.values()) {
    if (shown.has(notice.id)) continue;
    draw(notice, { prepend: true });
    if (!notice.read) unread += 1;
  }
  nextCursor = page.next_cursor;
  show($("#more"), Boolean(nextCursor));
  renderCounts();
}

async function start() {
  try {
    const me = await kpay.me();
    show($("#loading"), false);
    if (!me) {
      show($("#need-login"), true);
      return;
    }
    show($("#inbox"), true);
    await loadPage(true);
    onUserEvent(socket, me.id, {
      onEvent: (frame) => {
        if (frame.type !== "notification" || !frame.data?.id || shown.has(frame.data.id)) return;
        draw(frame.data, { prepend: true });
        if (!frame.data.read) unread += 1;
        for (const arrived of arrivingDuringReads) arrived.set(frame.data.id, frame.data);
        renderCounts();
      },
      // Missed events: read the first page again (what was drawn below it stays valid).
      onResync: () => loadPage(true).catch((error) => showError(errorBox, error)),
    });
    socket.connect();
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

$("#read-all").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
  try {
    await markRead({ all: true });
    for (const notice of shown.values()) {
      if (!notice.read) {
        notice.read = true;
        draw(notice);
      }
    }
    renderCounts();
  } catch (error) {
    showError(errorBox, error);
  }
}, "处理中…"));

$("#more").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
  try {
    await loadPage(false);
  } catch (error) {
    showError(errorBox, error);
  }
}, "加载中…"));

start();
