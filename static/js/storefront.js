// Cards the home page (index.js) and 已购 (mine.js) sell from: rooms, courses,
// consultants and search results, with covers (or a generated placeholder), people by
// nickname and avatar, prices in yuan, and start times in Beijing words ("今天 20:00").

import { formatFen } from "./money.js";
import { el } from "./ui.js";

const ZONE = "Asia/Shanghai";
const PALETTES = 6;

/** The server's "now" in ms: the dev clock may have been moved (GET /api/v1/dev/clock),
 * so pages in dev mode keep its offset; otherwise the device clock. */
export async function serverNow(kpay, dev) {
  if (!dev) return () => Date.now();
  try {
    const clock = await kpay.get("/api/v1/dev/clock");
    const offset = new Date(clock.now).getTime() - Date.now();
    return () => Date.now() + offset;
  } catch {
    return () => Date.now();
  }
}

function beijingParts(ms) {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: ZONE, year: "numeric", month: "numeric", day: "numeric",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(ms));
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return { y: get("year"), m: get("month"), d: get("day"), h: get("hour"), min: get("minute") };
}

/** "今天 20:00", "明天 09:30", "后天 …", "12月5日 20:00" (Beijing), relative to `nowMs`. */
export function startText(iso, nowMs) {
  const at = new Date(iso).getTime();
  if (Number.isNaN(at)) return "";
  const t = beijingParts(at);
  const n = beijingParts(nowMs);
  const days = Math.round((Date.UTC(t.y, t.m - 1, t.d) - Date.UTC(n.y, n.m - 1, n.d)) / 86400000);
  const clock = `${String(t.h).padStart(2, "0")}:${String(t.min).padStart(2, "0")}`;
  const day = { 0: "今天", 1: "明天", 2: "后天", [-1]: "昨天" }[days];
  if (day) return `${day} ${clock}`;
  return t.y === n.y ? `${t.m}月${t.d}日 ${clock}` : `${t.y}年${t.m}月${t.d}日 ${clock}`;
}

/** A stable small number for a string: picks the placeholder's colours. */
function paletteOf(text) {
  let hash = 0;
  for (const char of String(text)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % PALETTES;
}

/** The cover image, or a coloured block with the title's first characters. */
export function cover(url, title, id, extraClass = "") {
  if (url) {
    return el("img", { class: `cover ${extraClass}`, src: url, alt: "", loading: "lazy" });
  }
  return el("span", { class: `cover placeholder ph-${paletteOf(id || title)} ${extraClass}`,
    "aria-hidden": "true" }, Array.from(title || "课").slice(0, extraClass ? 12 : 4).join(""));
}

/** An avatar: the picture, or the name's first character on a colour. */
export function avatar(url, name, size = "small") {
  if (url) return el("img", { class: `avatar ${size}`, src: url, alt: "" });
  return el("span", { class: `avatar ${size} ph-${paletteOf(name)}`, "aria-hidden": "true" },
    Array.from(name || "?")[0]);
}

export function priceText(fen) {
  return fen ? formatFen(fen) : "免费";
}

function person(name, avatarUrl) {
  return el("span", { class: "person" }, avatar(avatarUrl, name), el("span", {}, name));
}

/** A live room card: cover, 直播中 or the start time, title, host, price. */
export function roomCard(room, nowMs, { bought = false } = {}) {
  const live = room.state === "live";
  const when = live ? el("span", { class: "live-dot" }, "直播中")
    : el("span", { class: "when" }, room.state === "ended" ? "已结束" : startText(room.starts_at, nowMs));
  return el("li", { class: "store-card room-card", "data-id": room.id },
    el("a", { href: `/static/room.html?id=${encodeURIComponent(room.id)}`, class: "card-link" },
      cover(room.cover_url, room.title, room.id),
      el("span", { class: "card-body" },
        el("strong", { class: "card-title" }, room.title),
        person(room.host_name || "主讲人", room.host_avatar_url),
        el("span", { class: "card-meta" }, when,
          el("span", { class: bought ? "price bought" : "price" },
            bought ? "已购" : priceText(room.ticket_price))))));
}

/** A course card: cover, title, author, lesson count, price or 已购. */
export function courseCard(course, { bought = false } = {}) {
  const count = course.lesson_count ?? (course.lessons ? course.lessons.length : null);
  return el("li", { class: "store-card course-card", "data-id": course.id },
    el("a", { href: `/static/course.html?id=${encodeURIComponent(course.id)}`, class: "card-link" },
      cover(course.cover, course.title, course.id, "wide"),
      el("span", { class: "card-body" },
        el("strong", { class: "card-title" }, course.title),
        el("span", { class: "muted small" }, course.author_name || ""),
        el("span", { class: "card-meta" },
          el("span", { class: "muted small" }, count === null ? "" : `${count} 讲`),
          el("span", { class: bought ? "price bought" : "price" },
            bought ? "已购" : priceText(course.price))))));
}

/** A consultant row: avatar, name, title, rate per minute; links to their profile. */
export function consultantCard(profile) {
  const id = profile.consultant_id;
  return el("li", { class: "store-card consultant-card", "data-id": id },
    el("a", { href: `/static/profile.html?id=${encodeURIComponent(id)}`, class: "card-link" },
      avatar(profile.avatar_url, profile.name, "large"),
      el("span", { class: "card-body" },
        el("strong", { class: "card-title" }, profile.name),
        el("span", { class: "muted small" }, profile.title || "咨询师"),
        el("span", { class: "card-meta" },
          el("span", { class: "price" }, `${formatFen(profile.rate_per_minute)}/分钟`),
          profile.busy ? el("span", { class: "muted small" }, "咨询中") : null))));
}

/** A search result as the card of its kind. */
export function resultCard(item, nowMs, boughtCourses = new Set()) {
  const extra = item.extra || {};
  if (item.kind === "room") {
    return roomCard({ id: item.id, title: item.title, host_name: item.author_name,
      cover_url: item.cover_url, state: extra.state, starts_at: extra.starts_at,
      ticket_price: extra.price }, nowMs);
  }
  if (item.kind === "course") {
    return courseCard({ id: item.id, title: item.title, author_name: item.author_name,
      cover: item.cover_url, lesson_count: extra.lesson_count, price: extra.price },
    { bought: boughtCourses.has(item.id) });
  }
  if (item.kind === "consultant") {
    return consultantCard({ consultant_id: item.id, name: item.author_name,
      title: extra.title, rate_per_minute: extra.rate_per_minute || 0 });
  }
  return null; // a kind a newer plugin adds: not shown until this page knows it
}

/** The console's "分类（可选）" field: a select of GET /api/v1/categories (none chosen:
 * no category). Resolves to null when the list cannot be read (the form works without). */
export async function categoryField(kpay, id) {
  try {
    const { categories } = await kpay.get("/api/v1/categories");
    const select = el("select", { id, name: "category" }, el("option", { value: "" }, "不选择"),
      categories.map((name) => el("option", { value: name }, name)));
    return el("div", { class: "field" }, el("label", { for: id }, "分类（可选）"), select);
  } catch {
    return null;
  }
}

/** `{category}` for a create body from the select made by categoryField, or `{}`. */
export function categoryOf(select) {
  return select && select.value ? { category: select.value } : {};
}
