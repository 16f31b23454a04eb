// Paying an order from a page: pick the WeChat Pay channel that fits the browser, fall
// back to what the server offers, show the QR / invoke the JS bridge / redirect, poll the
// order until it is paid. `PaymentPanel` is the reusable UI (wallet, tickets, courses).

import { renderSVG } from "../vendor/uqr/uqr.js";
import { formatFen } from "./money.js";
import { el, errorText, inWeChat, onMobile, show } from "./ui.js";

export const FINAL_STATUSES = new Set(["paid", "fulfilled", "closed", "refunded"]);
export const PAID_STATUSES = new Set(["paid", "fulfilled"]);

export const STATUS_TEXT = {
  pending: "待支付",
  paid: "已支付，正在处理…",
  fulfilled: "支付成功",
  closed: "订单已关闭",
  refunded: "已退款",
};

/** WeChat Pay channels to try, best first, for this browser:
 * inside WeChat the JS bridge (jsapi); a phone browser the H5 redirect (mweb);
 * a desktop a QR code to scan (native). */
export function preferredChannels(userAgent = navigator.userAgent) {
  if (inWeChat(userAgent)) return ["jsapi", "native"];
  if (onMobile(userAgent)) return ["mweb", "native"];
  return ["native", "mweb"];
}

// Answers that mean "not this channel here", so the next one is tried: the deployment has
// no such channel, the item cannot be paid by it, or (jsapi) the user has no openid because
// they did not log in through WeChat; sending them through OAuth now would log them in as
// another user, so a QR code is the better fallback.
const UNAVAILABLE = new Set(["unknown_channel", "channel_not_allowed", "openid_required"]);

/** Create the order on the first channel the server accepts. Resolves to
 * {order, pay, channel}; rejects with the last ApiError (code "no_channel" when none fits). */
export async function createOrder(kpay, item, channels = preferredChannels()) {
  let last = null;
  for (const channel of channels) {
    try {
      const reply = await kpay.post("/api/v1/orders", { item, channel });
      return { order: reply.order, pay: reply.pay || {}, channel };
    } catch (error) {
      if (!UNAVAILABLE.has(error.code)) throw error;
      last = error; // this deployment has no such channel: try the next one
    }
  }
  const error = last || new Error("no channel");
  error.code = "no_channel";
  throw error;
}

/** Poll GET /api/v1/orders/{id} until a final status (or `signal` aborts). Calls
 * onUpdate(order) on each change; resolves with the last order seen. */
export async function waitForOrder(kpay, orderId, { onUpdate = () => {}, signal } = {}) {
  let delay = 1000;
  let lastStatus = null;
  for (;;) {
    if (signal?.aborted) return null;
    let order = null;
    let wait = delay;
    try {
      ({ order } = await kpay.get(`/api/v1/orders/${encodeURIComponent(orderId)}`));
    } catch (error) {
      // Too many requests: ask again (a GET) once the server says we may. Network
      // trouble (no status, or 5xx): keep polling. Any other refusal is final.
      if (error.status === 429) wait = Math.max(delay, (error.retryAfter || 1) * 1000);
      else if (error.status && error.status < 500) throw error;
    }
    if (order && order.status !== lastStatus) {
      lastStatus = order.status;
      onUpdate(order);
    }
    if (order && FINAL_STATUSES.has(order.status) && order.status !== "paid") return order;
    await sleep(wait, signal);
    delay = Math.min(5000, delay * 1.5);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Open WeChat's pay sheet with the jsapi params. Resolves "ok", "cancel" or "fail". */
export function invokeJsapi(params) {
  return new Promise((resolve) => {
    const invoke = () => {
      globalThis.WeixinJSBridge.invoke("getBrandWCPayRequest", params, (result) => {
        const message = String(result?.err_msg || "");
        if (message.endsWith(":ok")) resolve("ok");
        else if (message.endsWith(":cancel")) resolve("cancel");
        else resolve("fail");
      });
    };
    if (globalThis.WeixinJSBridge) invoke();
    else document.addEventListener("WeixinJSBridgeReady", invoke, { once: true });
  });
}

/** WeChat sends the payer back to `returnUrl` after H5 pay (mweb). */
export function mwebUrl(mwebUrlFromServer, returnUrl) {
  const joiner = mwebUrlFromServer.includes("?") ? "&" : "?";
  return `${mwebUrlFromServer}${joiner}redirect_url=${encodeURIComponent(returnUrl)}`;
}

/** Where a page that sells something sends the user to top up: the wallet, with
 * `?return=` this page (its path and query, without a WeChat `order=` left from H5 pay),
 * so the wallet offers 返回继续购买 after the top-up (docs/pages.md "Paying"). */
export function walletUrl(returnPath = null) {
  let back = returnPath;
  if (back === null) {
    const query = new URLSearchParams(location.search);
    query.delete("order");
    const rest = query.toString();
    back = location.pathname + (rest ? `?${rest}` : "");
  }
  return `/static/wallet.html?return=${encodeURIComponent(back)}`;
}

/** `value` if it is a path on this site to go back to (same origin, relative, at most
 * 512 characters), else null: a `return` parameter must never send anyone elsewhere. */
export function safeReturnPath(value) {
  if (typeof value !== "string" || value.length === 0 || value.length > 512) return null;
  // One leading slash: "//host" and "/\host" are other sites to a browser.
  if (!/^\/(?![/\\])/.test(value) || /[\u0000-\u001f\u007f\\]/.test(value)) return null;
  try {
    const url = new URL(value, location.origin);
    if (url.origin !== location.origin) return null;
    const path = url.pathname + url.search + url.hash;
    // Checked again once normalised: "/.//evil" becomes "//evil", another site.
    return /^\/(?![/\\])/.test(path) ? path : null;
  } catch {
    return null;
  }
}

/** Draw `text` as a QR code (SVG) inside `container`. */
export function renderQr(container, text) {
  // The SVG is built by the vendored encoder from module data only (no text of ours in
  // it), so inserting it as markup is safe.
  container.innerHTML = renderSVG(text, { ecc: "M", border: 2, pixelSize: 8 });
}

/**
 * The payment UI in `root` (an empty element). `start(item)` creates and pays an order;
 * `resume(orderId)` keeps watching an order (after the mweb redirect back).
 * options: kpay, dev (offer the simulator), onPaid(order), returnUrl(order) for mweb.
 */
export class PaymentPanel {
  constructor(root, { kpay, dev = false, onPaid = () => {}, returnUrl = null }) {
    this.root = root;
    this.kpay = kpay;
    this.dev = dev;
    this.onPaid = onPaid;
    this.returnUrl = returnUrl || ((order) => `${location.origin}${location.pathname}?order=${order.id}`);
    this.watch = null;
    this.order = null;
    this._build();
  }

  _build() {
    this.title = el("span", { id: "order-title" });
    this.amount = el("strong", { id: "order-amount" });
    this.status = el("p", { id: "order-status", role: "status", "data-status": "" });
    this.qr = el("div", { id: "qr", role: "img", "aria-label": "微信支付二维码" });
    this.codeUrl = el("a", { id: "code-url", href: "#" });
    this.native = el("div", { id: "pay-native", class: "qr", hidden: true },
      this.qr, el("p", {}, "请使用微信“扫一扫”完成支付"),
      el("p", { class: "code-url muted" }, this.codeUrl));
    this.mwebLink = el("a", { class: "btn", id: "mweb-link", href: "#" }, "前往微信支付");
    this.mweb = el("div", { id: "pay-mweb", hidden: true }, this.mwebLink);
    this.error = el("div", { id: "pay-error", class: "alert", role: "alert", hidden: true });
    this.devPay = el("button", { class: "btn secondary", type: "button", id: "dev-pay", hidden: true },
      "模拟支付（开发模式）");
    this.closeButton = el("button", { class: "btn plain", type: "button", id: "payment-close" }, "关闭");
    this.root.replaceChildren(
      el("h2", { id: "payment-title" }, "支付"),
      el("p", {}, this.title, " ", this.amount),
      this.status, this.native, this.mweb, this.error, this.devPay, this.closeButton);
    this.root.setAttribute("aria-labelledby", "payment-title");
    this.devPay.addEventListener("click", () => this._simulate());
    this.closeButton.addEventListener("click", () => this.close());
    show(this.root, false);
  }

  /** Create an order for `item` and start paying it. Rejects with the creation error
   * (the caller shows it next to its form); payment problems show in the panel.
   * `channels` defaults to the WeChat ones for this browser; ["wallet", ...] pays from
   * the balance first (paid at once, or 402 insufficient_balance). */
  async start(item, channels = preferredChannels()) {
    const { order, pay, channel } = await createOrder(this.kpay, item, channels);
    this._open(order);
    if (PAID_STATUSES.has(order.status)) {
      this.onPaid(order);
      return order;
    }
    if (channel === "native") {
      renderQr(this.qr, pay.code_url);
      this.codeUrl.textContent = pay.code_url;
      this.codeUrl.href = pay.code_url;
      show(this.native, true);
    } else if (channel === "mweb") {
      const target = mwebUrl(pay.mweb_url, this.returnUrl(order));
      this.mwebLink.href = target;
      show(this.mweb, true);
      // In dev mode stay here, so the simulator can be used instead of the real H5 pay.
      if (!this.dev) location.href = target;
    } else if (channel === "jsapi") {
      invokeJsapi(pay.params || pay).then((outcome) => {
        if (outcome === "cancel") this._problem("已取消支付");
        else if (outcome === "fail") this._problem("支付未完成，请重试");
      });
    }
    this._watch(order.id);
    return order;
  }

  /** Watch an existing order (e.g. ?order=<id> after returning from WeChat H5 pay). */
  async resume(orderId) {
    const { order } = await this.kpay.get(`/api/v1/orders/${encodeURIComponent(orderId)}`);
    this._open(order);
    this._watch(order.id);
    return order;
  }

  close() {
    this.watch?.abort();
    this.watch = null;
    this.order = null;
    show(this.root, false);
  }

  _open(order) {
    this.watch?.abort();
    this.order = order;
    this.title.textContent = order.title || "订单";
    this.amount.textContent = formatFen(order.amount);
    show(this.native, false);
    show(this.mweb, false);
    show(this.error, false);
    show(this.devPay, this.dev && order.status === "pending");
    this._status(order);
    show(this.root, true);
    // The panel may sit below the fold (the wallet's under the top-up form): bring it
    // into view, below the sticky header (kpay.css .card scroll-margin-top).
    this.root.scrollIntoView({ block: "start" });
  }

  _status(order) {
    this.status.dataset.status = order.status;
    this.status.textContent = STATUS_TEXT[order.status] || order.status;
    if (order.status !== "pending") {
      show(this.devPay, false);
      show(this.native, false);
      show(this.mweb, false);
    }
  }

  _problem(text) {
    this.error.textContent = text;
    show(this.error, Boolean(text));
  }

  _watch(orderId) {
    const watch = new AbortController();
    this.watch = watch;
    waitForOrder(this.kpay, orderId, {
      signal: watch.signal,
      onUpdate: (order) => {
        if (this.watch === watch) this._update(order);
      },
    }).catch((error) => this._problem(errorText(error)));
  }

  /** A newer view of the order (poll or simulator); onPaid once per paid status. */
  _update(order) {
    if (!this.order || order.id !== this.order.id || order.status === this.order.status) return;
    this.order = order;
    this._status(order);
    if (PAID_STATUSES.has(order.status)) this.onPaid(order);
  }

  async _simulate() {
    if (!this.order) return;
    this.devPay.disabled = true;
    try {
      const { order } = await this.kpay.post(`/api/v1/dev/orders/${this.order.id}/pay`);
      this._update(order);
    } catch (error) {
      this._problem(errorText(error));
    } finally {
      this.devPay.disabled = false;
    }
  }
}
