// Small DOM helpers shared by the pages: safe element building, Chinese error messages,
// the connection badge and time formatting. Data is always set as text, never as HTML.

import { mediaErrorText } from "./media.js";
import { formatFen } from "./money.js";
// Dev mode only: the 开发 chip and its clock controls on every page (docs/pages.md).
import "./devpanel.js";

/** Build an element: el("a", {href: "/x", class: "btn"}, "text", child, ...). Attributes
 * named on* are not allowed (no handlers in markup); use addEventListener. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) throw new Error(`set ${name} with addEventListener`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Show or hide an element (the `hidden` attribute; CSS keeps it hidden). */
export function show(node, visible = true) {
  node.hidden = !visible;
}

export const ROLE_NAMES = { student: "学生", consultant: "咨询师", admin: "管理员" };

export const STATE_TEXT = {
  online: "已连接",
  connecting: "连接中…",
  reconnecting: "重新连接中…",
  offline: "离线",
};

/** Keep `badge` showing the socket's connection state (text + data-state for styling). */
export function bindConnectionBadge(badge, socket) {
  const render = (state) => {
    badge.dataset.state = state;
    badge.textContent = STATE_TEXT[state] || state;
    badge.setAttribute("aria-label", `实时连接：${STATE_TEXT[state] || state}`);
  };
  render(socket.state);
  return socket.on("state", ({ state }) => render(state));
}

const STATUS_TEXT = {
  0: "网络连接失败，请检查网络后重试",
  401: "登录已失效，请重新登录",
  403: "没有权限进行此操作",
  404: "要找的内容不存在",
  409: "当前状态不允许此操作",
  413: "提交的内容太大",
  429: "操作太频繁，请稍后再试",
};

/** A message in Chinese for an ApiError (or any Error), for people, not for logs. */
export function errorText(error) {
  const details = error?.details || {};
  const media = mediaErrorText(error); // uploads and media URLs (media.js)
  if (media) return media;
  switch (error?.code) {
    case "invalid_amount":
      if (Number.isSafeInteger(details.min) && Number.isSafeInteger(details.max)) {
        return `金额须在 ${formatFen(details.min)} 到 ${formatFen(details.max)} 之间`;
      }
      return "金额不正确";
    case "insufficient_balance":
      if (Number.isSafeInteger(error.needed) && Number.isSafeInteger(details.balance)) {
        return `余额不足：需要 ${formatFen(error.needed)}，当前余额 ${formatFen(details.balance)}`;
      }
      return "余额不足，请先充值";
    case "unknown_channel":
    case "channel_not_allowed":
      return "该支付方式暂不可用";
    case "payment_provider_error":
      return "支付服务暂时不可用，请稍后重试";
    case "invalid_field":
    case "invalid_json":
      return fieldErrorText(details.field);
    case "offline":
    case "disconnected":
    case "timeout":
    case "network_error":
      return STATUS_TEXT[0];
    case "order_not_found":
      return "订单不存在";
    case "statement_too_large":
      return "该月账单条目过多，无法下载，请联系客服导出";
    case "rate_limited":
      return waitText(error);
    case "too_many_open":
      return tooManyOpenText(details);
    case "account_blocked":
      return "账号已被停用，如有疑问请联系客服";
    case "token_revoked":
      return "登录已失效（已在其他地方退出或账号有变动），请重新登录";
    case "token_expired":
      return "登录已过期，请重新登录";
    case "invalid_name":
      return "昵称须为 1–20 个字，不能含换行或不可见字符";
    case "not_followable":
      return "只能关注咨询师";
    case "cannot_follow_self":
      return "不能关注自己";
    case "user_not_found":
      return "找不到这位用户";
    case "course_not_found":
      return "这门课程不存在或已下架";
    case "room_not_found":
      return "这个直播间不存在";
    case "unauthorized":
    case "invalid_token":
      return STATUS_TEXT[401];
    // The operators' console (admin.html)
    case "confirm_mismatch":
      return "输入的用户 ID 不一致，未执行";
    case "cannot_block_self":
      return "不能封禁自己";
    case "cannot_anonymise_self":
      return "不能注销自己的账号";
    case "not_refundable":
      return "该订单当前不可退款（可能正在退款中）";
    default:
      break;
  }
  if (error?.status === 429) return waitText(error);
  if (error && error.status in STATUS_TEXT) return STATUS_TEXT[error.status];
  if (error?.status >= 500) return "服务器开小差了，请稍后重试";
  return error?.code ? `操作失败（${error.code}）` : "操作失败，请重试";
}

// The API names a bad field in English ("rate_per_minute", "lessons.0.title"): people see
// its Chinese name, or none (never the English one).
const FIELD_NAMES = {
  title: "标题", description: "简介", body: "正文", bio: "个人简介", name: "昵称",
  price: "价格", ticket_price: "门票价格", question_min_price: "最低提问悬赏",
  rate_per_minute: "每分钟价格", min_minutes: "最少分钟", max_minutes: "最长分钟",
  capacity: "人数上限", starts_at: "开始时间", category: "分类", amount: "金额",
  user_id: "用户 ID", text: "内容", bounty: "悬赏金额",
};

function fieldErrorText(field) {
  const parts = String(field || "").split(".").reverse();
  const known = parts.find((part) => Object.hasOwn(FIELD_NAMES, part));
  return known ? `输入有误（${FIELD_NAMES[known]}）` : "输入有误，请检查后重试";
}

/** Whole seconds a refused (429) call asks to wait: `retryAfter` (kpay.js, from the
 * Retry-After header) or the envelope's `retry_after`; null when it does not say. */
export function retryAfterOf(error) {
  const wait = error?.retryAfter ?? error?.details?.retry_after;
  return Number.isSafeInteger(wait) && wait > 0 ? wait : null;
}

function waitText(error) {
  const wait = retryAfterOf(error);
  return wait ? `操作太频繁，请 ${wait} 秒后再试` : STATUS_TEXT[429];
}

const OPEN_CAP_TEXT = {
  pending_orders: (n) => `未支付的订单太多（最多 ${n} 个），请先支付或等订单过期`,
  consult_requests: (n) => `等待回复的咨询请求太多（最多 ${n} 个），请等回复或先取消一个`,
  consultant_requests: () => "这位咨询师排队的请求已满，请稍后再试",
  open_rooms: (n) => `未结束的直播间太多（最多 ${n} 个），请先结束一个`,
  draft_courses: (n) => `未发布的课程太多（最多 ${n} 门），请先发布一门`,
  following: (n) => `关注的人太多（最多 ${n} 位），请先取消关注一些`,
};

function tooManyOpenText(details) {
  const text = Object.hasOwn(OPEN_CAP_TEXT, details.what) ? OPEN_CAP_TEXT[details.what] : null;
  const limit = Number.isSafeInteger(details.limit) ? details.limit : "";
  return text ? text(limit) : "未完成的事项太多，请先处理已有的";
}

/** Put an error message in a live region (role="alert"), or clear it with null. */
export function showError(region, error) {
  region.textContent = error ? errorText(error) : "";
  region.dataset.code = error?.code || "";
  show(region, Boolean(error));
}

/** "11月26日 09:20" in the reader's time zone, from an ISO 8601 time. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getMonth() + 1}月${date.getDate()}日 ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** True inside WeChat's built-in browser. */
export function inWeChat(userAgent = navigator.userAgent) {
  return /MicroMessenger/i.test(userAgent);
}

/** True on a phone or tablet browser (outside WeChat too). */
export function onMobile(userAgent = navigator.userAgent) {
  return /Android|iPhone|iPad|iPod|Mobile|HarmonyOS/i.test(userAgent);
}

/** Run `task` with `button` disabled (no double submits) and an optional busy text. A task
 * refused with 429 keeps the button disabled for the seconds the server asked to wait
 * (nothing is retried by itself). */
export async function whileBusy(button, task, busyText = null) {
  const text = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  if (busyText) button.textContent = busyText;
  let wait = null;
  try {
    return await task();
  } catch (error) {
    if (error?.status === 429) wait = retryAfterOf(error);
    throw error;
  } finally {
    button.removeAttribute("aria-busy");
    if (busyText) button.textContent = text;
    if (wait) setTimeout(() => { button.disabled = false; }, wait * 1000);
    else button.disabled = false;
  }
}

// Background classes of the default avatar (kpay.css `.avatar.c0` to `.c5`): dark enough
// for white text (contrast 4.5:1 and more).
const AVATAR_COLOURS = 6;

/** A person's face: their avatar image (`profile.avatar_url`), or by default the first
 * character of their nickname on a coloured circle (the colour from the id, so one person
 * keeps one colour). `profile` is an entry of `app.users` profiles ({id, name,
 * avatar_url}); `size` in CSS pixels. The image is decorative (alt=""): put the name next
 * to it. */
export function avatar(profile, size = 40) {
  const name = (profile?.name || "").trim();
  const url = profile?.avatar_url;
  let node;
  if (typeof url === "string" && (/^(\/(?!\/)|https:\/\/)/.test(url) || url.startsWith(`${location.origin}/`))) {
    node = el("img", { class: "avatar", src: url, alt: "", loading: "lazy", decoding: "async" });
    // A file taken down (or gone) is not served: the default face stands in.
    node.addEventListener("error", () => node.replaceWith(avatar({ ...profile, avatar_url: null }, size)),
      { once: true });
  } else {
    let hash = 0;
    for (const char of String(profile?.id || name)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    node = el("span", { class: `avatar c${hash % AVATAR_COLOURS}`, "aria-hidden": "true" },
      Array.from(name)[0] || "?");
    node.style.fontSize = `${Math.round(size * 0.45)}px`;
  }
  node.style.width = `${size}px`;
  node.style.height = `${size}px`;
  return node;
}
