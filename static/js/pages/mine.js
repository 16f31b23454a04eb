// 已购: what the user bought, in tabs: 我的直播 (GET /api/v1/me/rooms), 我的课程
// (GET /api/v1/me/courses), 我的咨询 (GET /api/v1/consultations?role=student) and 订单
// (GET /api/v1/orders): each order's kind, amount, state and time in Chinese, its
// receipt on tap. A tab shows only when its plugin's routes exist; #orders opens 订单.

import { KPay, formatFen } from "../kpay.js";
import { $, el, formatTime, show, showError } from "../ui.js";
import { avatar, courseCard, roomCard, serverNow } from "../storefront.js";

const kpay = new KPay();
const errorBox = $("#error");
const ORDER_LIMIT = 100;

const KIND_TEXT = {
  live_ticket: "直播门票", live_question: "付费提问", course: "课程", wallet_topup: "钱包充值",
};
const ORDER_STATE_TEXT = {
  pending: "待支付", paid: "已支付", fulfilled: "已完成", closed: "已关闭", refunded: "已退款",
};
const CHANNEL_TEXT = { wallet: "余额支付", jsapi: "微信支付", native: "微信支付", mweb: "微信支付" };
const CONSULT_STATE_TEXT = {
  requested: "等待咨询师接受", active: "咨询中", paused: "已暂停", ended: "已结束",
};

let now = () => Date.now();
const loaded = new Set();

async function start() {
  try {
    const [user, dev, paths] = await Promise.all([
      kpay.me(), kpay.devEnabled(), kpay.apiPaths().catch(() => new Set()),
    ]);
    show($("#loading"), false);
    show($("#need-login"), !user);
    if (!user) return;
    now = await serverNow(kpay, dev);
    show($("#mine"), true);
    const tabs = [...document.querySelectorAll("[role=tab]")];
    for (const tab of tabs) {
      const needs = tab.dataset.needs;
      show(tab, !needs || paths.has(needs));
      tab.addEventListener("click", () => select(tab.dataset.tab));
    }
    const wanted = location.hash.slice(1);
    const first = tabs.find((tab) => !tab.hidden && tab.dataset.tab === wanted)
      || await firstWithItems(tabs.filter((tab) => !tab.hidden))
      || tabs.find((tab) => !tab.hidden);
    await select(first.dataset.tab);
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

/** With no tab asked for: the first of 我的直播/课程/咨询 that has something in it, so
 * a student who bought only a course does not land on "还没有买过直播". */
async function firstWithItems(tabs) {
  for (const tab of tabs) {
    const name = tab.dataset.tab;
    if (name === "orders") continue;
    const ok = await LOADERS[name]().then(() => true, () => false);
    if (!ok) continue; // select() loads it again and shows the error
    loaded.add(name);
    if ($(`#panel-${name} li`)) return tab;
  }
  return null;
}

async function select(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    show($(`#panel-${tab.dataset.tab}`), on);
  }
  history.replaceState(null, "", `#${name}`);
  if (loaded.has(name)) return;
  try {
    await LOADERS[name]();
    loaded.add(name);
  } catch (error) {
    showError(errorBox, error);
  }
}

function fill(list, empty, items) {
  $(list).replaceChildren(...items);
  show($(empty), items.length === 0);
}

async function loadRooms() {
  const { rooms } = await kpay.get("/api/v1/me/rooms?limit=100");
  fill("#room-list", "#rooms-empty", rooms.map((room) => roomCard(room, now(), { bought: true })));
}

async function loadCourses() {
  const { courses } = await kpay.get("/api/v1/me/courses?limit=200");
  fill("#course-list", "#courses-empty", courses.map(({ course, progress }) => {
    const card = courseCard(course, { bought: true });
    $(".card-body", card).append(el("span", { class: "progress-text" },
      `已学 ${progress.completed}/${progress.total}`));
    return card;
  }));
}

async function loadConsults() {
  const { consultations } = await kpay.get("/api/v1/consultations?role=student&limit=100");
  const names = await consultantNames(consultations.map((c) => c.consultant_id));
  fill("#consult-list", "#consults-empty", consultations.map((c) => {
    const name = names.get(c.consultant_id) || "咨询师";
    return el("li", { class: "order-card", "data-id": c.id },
      el("details", {},
        el("summary", {},
          el("span", { class: "order-title person" }, avatar(null, name), `与 ${name} 的咨询`),
          el("span", { class: "muted small" }, formatTime(c.requested_at)),
          el("span", { class: "order-state", "data-status": c.status },
            CONSULT_STATE_TEXT[c.status] || "处理中")),
        receipt([
          ["时长", `${c.billed_minutes} 分钟`],
          ["单价", `${formatFen(c.rate_per_minute)}/分钟`],
          ["实付", formatFen(c.charged)],
          c.discount ? ["优惠", formatFen(c.discount)] : null,
          c.ended_at ? ["结束时间", formatTime(c.ended_at)] : null,
        ], el("a", { href: "/static/consult.html" }, "去咨询页"))));
  }));
}

/** Consultants' names for the ids (public profiles; at most the 20 first distinct). */
async function consultantNames(ids) {
  const names = new Map();
  await Promise.all([...new Set(ids)].slice(0, 20).map(async (id) => {
    try {
      const { profile } = await kpay.get(`/api/v1/consultants/${encodeURIComponent(id)}`);
      names.set(id, profile.name);
    } catch {
      // a consultant without a profile any more: shown as 咨询师
    }
  }));
  return names;
}

async function loadOrders() {
  const { orders } = await kpay.get(`/api/v1/orders?limit=${ORDER_LIMIT}`);
  fill("#order-list", "#orders-empty", orders.map(orderCard));
}

function orderState(order) {
  const text = ORDER_STATE_TEXT[order.status] || "处理中";
  return order.refunded > 0 && order.status !== "refunded"
    ? `${text}（已退 ${formatFen(order.refunded)}）` : text;
}

function orderCard(order) {
  const kind = KIND_TEXT[order.kind] || "其他";
  const link = itemLink(order);
  return el("li", { class: "order-card", "data-id": order.id },
    el("details", {},
      el("summary", {},
        el("span", { class: "order-title" },
          order.title.startsWith(kind) ? order.title : `${kind} · ${order.title}`),
        el("span", { class: "muted small" }, formatTime(order.created_at)),
        el("span", { class: "price" }, formatFen(order.amount)),
        el("span", { class: "order-state", "data-status": order.status }, orderState(order))),
      receipt([
        ["订单号", order.out_trade_no],
        ["类型", kind],
        ["支付方式", CHANNEL_TEXT[order.channel] || "其他方式"],
        order.list_amount !== order.amount ? ["原价", formatFen(order.list_amount)] : null,
        ...(order.adjustments || []).map((a) => ["优惠", `-${formatFen(Math.abs(a.amount || 0))}`]),
        ["实付", formatFen(order.amount)],
        order.refunded ? ["已退款", formatFen(order.refunded)] : null,
        ["下单时间", formatTime(order.created_at)],
        order.paid_at ? ["支付时间", formatTime(order.paid_at)] : null,
      ], link)));
}

/** Where the bought thing is: the room or the course. */
function itemLink(order) {
  const item = order.item || {};
  if (item.room_id) {
    return el("a", { href: `/static/room.html?id=${encodeURIComponent(item.room_id)}` }, "进入直播间");
  }
  if (item.course_id) {
    return el("a", { href: `/static/course.html?id=${encodeURIComponent(item.course_id)}` }, "去学习");
  }
  if (order.kind === "wallet_topup") return el("a", { href: "/static/wallet.html" }, "查看钱包");
  return null;
}

function receipt(rows, link) {
  return el("dl", { class: "receipt" },
    rows.filter(Boolean).map(([label, value]) => el("div", {}, el("dt", {}, label), el("dd", {}, value))),
    link ? el("div", {}, el("dt", {}, ""), el("dd", {}, link)) : null);
}

const LOADERS = { rooms: loadRooms, courses: loadCourses, consults: loadConsults, orders: loadOrders };

start();
