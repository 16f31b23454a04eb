// Sharing a page (docs/pages.md "Sharing"): the WeChat share card, a 分享 button and
// the 生成海报 poster overlay.
//
//   import { shareCard, mountShareBar } from "/static/js/share.js";
//   shareCard({ title, desc, link, imgUrl });            // inside WeChat: sets the card
//   mountShareBar(container, { resource: `course:${id}`, card });   // 分享 + 生成海报
//
// Inside WeChat the card is set through the JS-SDK (wx.config signed by the server for
// this exact page URL, without the hash: GET /api/v1/wechat/jssdk). Outside WeChat
// shareCard does nothing; the 分享 button copies the link instead.

import { errorFromEnvelope } from "./errors.js";
import { KPay } from "./kpay.js";
import { el, errorText, inWeChat, show } from "./ui.js";
import { wechatSdk } from "./wechat.js";

export const SHARE_APIS = ["updateAppMessageShareData", "updateTimelineShareData"];
const MAX_TITLE = 64;
const MAX_DESC = 120;

let client = null;
const kpayClient = () => (client ??= new KPay());

/** `link` as an absolute URL of this page's origin (the page itself otherwise): WeChat
 * refuses a card whose link is not on a JS-SDK safe domain, and we never share elsewhere. */
export function sameOriginUrl(link) {
  try {
    const url = new URL(link || location.href, location.origin);
    if (url.origin === location.origin) return url.href.split("#")[0];
  } catch {
    /* not a URL: fall through */
  }
  return location.href.split("#")[0];
}

/** An absolute http(s) URL for an image (a path on this server becomes absolute), or "". */
export function absoluteImage(src) {
  if (!src) return "";
  try {
    const url = new URL(src, location.origin);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : "";
  } catch {
    return "";
  }
}

function clipped(text, most) {
  const value = String(text ?? "").replace(/\s+/g, " ").trim();
  return value.length > most ? `${value.slice(0, most - 1)}…` : value;
}

/** The card as WeChat's two share APIs take it. */
export function cardFields({ title, desc, link, imgUrl }) {
  return {
    title: clipped(title || document.title, MAX_TITLE),
    desc: clipped(desc, MAX_DESC),
    link: sameOriginUrl(link),
    imgUrl: absoluteImage(imgUrl),
  };
}

/** Set the WeChat share card of this page (friends and 朋友圈). Outside WeChat: nothing.
 * Resolves true when the card was set; a failure is swallowed (sharing still works with
 * WeChat's default card) and resolves false. */
export async function shareCard(card, { kpay = kpayClient() } = {}) {
  if (!inWeChat()) return false;
  const fields = cardFields(card);
  try {
    const wx = await wechatSdk(kpay, SHARE_APIS);
    if (!wx) return false;
    await Promise.all([
      new Promise((resolve, reject) => wx.updateAppMessageShareData({
        ...fields, success: resolve, fail: reject })),
      new Promise((resolve, reject) => wx.updateTimelineShareData({
        title: fields.title, link: fields.link, imgUrl: fields.imgUrl, success: resolve, fail: reject })),
    ]);
    return true;
  } catch {
    return false;
  }
}

// -- the share bar: 分享 and 生成海报 ----------------------------------------------------------

let stylesheet = false;
function addStylesheet() {
  if (stylesheet) return;
  stylesheet = true;
  document.head.append(el("link", { rel: "stylesheet", href: "/static/css/share.css" }));
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false; // no clipboard (http, old WebView): the overlay shows the link to copy
  }
}

/** A modal layer over the page with `children`, closed by its button, a tap outside or Esc. */
function overlay(id, labelText, ...children) {
  document.querySelector(`#${id}`)?.remove();
  const close = el("button", { type: "button", class: "btn plain share-close", id: `${id}-close` }, "关闭");
  const box = el("div", { class: "share-sheet", role: "dialog", "aria-modal": "true", "aria-label": labelText },
    ...children, close);
  const layer = el("div", { class: "share-layer", id }, box);
  const done = () => {
    layer.remove();
    document.removeEventListener("keydown", onKey);
  };
  const onKey = (event) => { if (event.key === "Escape") done(); };
  close.addEventListener("click", done);
  layer.addEventListener("click", (event) => { if (event.target === layer) done(); });
  document.addEventListener("keydown", onKey);
  document.body.append(layer);
  close.focus();
  return { layer, box, close: done };
}

/** 分享: in WeChat, point at its ··· menu (the card is set); elsewhere copy the link. */
export async function shareLink(card) {
  const link = sameOriginUrl(card?.link);
  if (inWeChat()) {
    overlay("share-hint", "分享提示",
      el("p", { class: "share-hint-title" }, "点击右上角 ··· 分享给朋友或朋友圈"),
      el("p", { class: "muted small" }, "也可以生成海报，长按保存后发给朋友"));
    return;
  }
  const copied = await copyText(link);
  overlay("share-hint", "分享链接",
    el("p", { class: "share-hint-title", id: "share-copied" }, copied ? "链接已复制，去粘贴给朋友吧" : "复制下面的链接发给朋友"),
    el("p", { class: "share-url", id: "share-url" }, link));
}

/** 生成海报: the server draws it (GET /api/v1/posters/{resource}); shown as an image to
 * long-press and save (WeChat) or save from the browser. */
export async function showPoster(resource, { kpay = kpayClient() } = {}) {
  const status = el("p", { class: "muted small", id: "poster-status", role: "status" }, "海报生成中…");
  const image = el("img", { id: "poster-image", class: "poster-image", alt: "分享海报", hidden: true });
  const tip = el("p", { class: "share-hint-title", id: "poster-tip", hidden: true },
    inWeChat() ? "长按图片保存，发给朋友或朋友圈" : "长按或右键保存图片，发给朋友");
  overlay("poster", "分享海报", status, image, tip);
  try {
    const headers = kpay.token ? { Authorization: `Bearer ${kpay.token}` } : {};
    const response = await fetch(`/api/v1/posters/${encodeURIComponent(resource)}`, { headers });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch { /* not JSON */ }
      throw errorFromEnvelope(response.status, body);
    }
    // A data: URL (the page's Content-Security-Policy allows data: images, not blob:).
    const blob = await response.blob();
    image.src = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
    await image.decode().catch(() => {});
    show(status, false);
    show(image, true);
    show(tip, true);
  } catch (error) {
    status.textContent = errorText(error);
    status.setAttribute("role", "alert");
  }
}

/** 分享 and 生成海报 buttons appended to `container`, and the WeChat card set. */
export function mountShareBar(container, { resource, card, kpay = kpayClient() }) {
  addStylesheet();
  // Pages call this again when their data reloads: the same card is not configured twice.
  const key = JSON.stringify([resource, card]);
  const existing = container.querySelector(".share-bar");
  if (existing?.dataset.key === key) return existing;
  existing?.remove();
  const share = el("button", { type: "button", class: "btn secondary", id: "share-button" }, "分享");
  const poster = el("button", { type: "button", class: "btn secondary", id: "poster-button" }, "生成海报");
  share.addEventListener("click", () => shareLink(card));
  poster.addEventListener("click", () => showPoster(resource, { kpay }));
  const bar = el("div", { class: "share-bar", "data-key": key }, share, poster);
  container.append(bar);
  shareCard(card, { kpay });
  return bar;
}
