// The dev panel (dev mode only; docs/pages.md "The dev panel"): a small 开发 chip in the
// bottom-left corner of every page that opens the app clock and its controls (+1 小时,
// +1 天, 跳到, 重置时钟) and 重置体验数据. ui.js imports this module, so every page has it.
//
// It shows only when GET /api/v1/dev/clock answers (404: dev mode off, nothing shown).
// Browsers driven by automation (navigator.webdriver: the page tests) get it only when
// localStorage "kpay.devpanel" is "on", so it never covers what another test taps.

import { KPay } from "./kpay.js";
import { el, errorText, show } from "./ui.js";

const HOUR = 3600;
const DAY = 24 * HOUR;
const OPEN_KEY = "kpay.devpanel.open";

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function remember(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* not remembered */
  }
}

function wanted() {
  if (navigator.webdriver) return stored("kpay.devpanel") === "on";
  return stored("kpay.devpanel") !== "off";
}

const pad = (n) => String(n).padStart(2, "0");

/** "2026年12月3日 09:20" in the reader's zone. */
export function clockText(date) {
  return `${date.getFullYear()}年${date.getMonth() + 1}月${date.getDate()}日 ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** How far the clock runs ahead of real time, in words ("快 1 天 2 小时"; "真实时间"). */
export function offsetText(seconds) {
  const ahead = Math.round(Math.abs(seconds) / 60);
  if (ahead < 1) return "真实时间";
  const days = Math.floor(ahead / 1440);
  const hours = Math.floor((ahead % 1440) / 60);
  const minutes = ahead % 60;
  const parts = [];
  if (days) parts.push(`${days} 天`);
  if (hours) parts.push(`${hours} 小时`);
  if (minutes && !days) parts.push(`${minutes} 分钟`);
  return `${seconds > 0 ? "比真实时间快" : "比真实时间慢"} ${parts.join(" ")}`;
}

/** The value of a datetime-local input for `date` (its local time, minutes). */
function localInputValue(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

class DevPanel {
  constructor(state) {
    this.kpay = new KPay();
    this.serverNow = new Date(state.now);
    this.readAt = performance.now();
    this.offset = state.offset;
    this._build();
    this._render();
    setInterval(() => this._tickClock(), 15_000);
  }

  now() {
    return new Date(this.serverNow.getTime() + (performance.now() - this.readAt));
  }

  _build() {
    const button = (id, text, extra = "") =>
      el("button", { type: "button", id, class: `devpanel-btn ${extra}`.trim() }, text);
    this.chip = el("button", {
      type: "button", id: "devpanel-chip", class: "devpanel-chip",
      "aria-expanded": "false", "aria-controls": "devpanel",
    }, "开发");
    this.clock = el("p", { id: "devpanel-clock", class: "devpanel-clock", role: "status" });
    this.offsetLine = el("p", { id: "devpanel-offset", class: "devpanel-muted" });
    this.jumpInput = el("input", { id: "devpanel-jump", type: "datetime-local" });
    this.message = el("p", { id: "devpanel-message", class: "devpanel-message", role: "alert", hidden: true });
    this.reload = el("button", { type: "button", id: "devpanel-reload", class: "devpanel-link", hidden: true },
      "刷新页面看变化");
    this.confirmBox = el("div", { id: "devpanel-confirm", class: "devpanel-confirm", hidden: true },
      el("p", {}, "将删除所有用户、订单、直播间、课程等体验数据，并退出登录。确定吗？"),
      el("div", { class: "devpanel-row" },
        button("devpanel-wipe", "确认清空", "danger"),
        button("devpanel-wipe-cancel", "取消", "plain")));
    this.panel = el("section", {
      id: "devpanel", class: "devpanel", "aria-labelledby": "devpanel-title", hidden: true,
    },
    el("div", { class: "devpanel-head" },
      el("h2", { id: "devpanel-title" }, "开发模式"),
      button("devpanel-close", "收起", "plain")),
    el("p", { class: "devpanel-muted" }, "服务器时间"),
    this.clock, this.offsetLine,
    el("div", { class: "devpanel-row" },
      button("devpanel-hour", "+1 小时"), button("devpanel-day", "+1 天")),
    el("div", { class: "devpanel-row" },
      el("label", { for: "devpanel-jump", class: "devpanel-label" }, "跳到"),
      this.jumpInput, button("devpanel-jump-go", "跳转")),
    el("div", { class: "devpanel-row" },
      button("devpanel-reset-clock", "重置时钟", "plain"),
      button("devpanel-reset-data", "重置体验数据", "danger-plain")),
    this.confirmBox, this.message, this.reload);
    this.root = el("div", { id: "devpanel-root", class: "devpanel-root" }, this.panel, this.chip);
    document.head.append(el("link", { rel: "stylesheet", href: "/static/css/devpanel.css" }));
    document.body.append(this.root);

    this.chip.addEventListener("click", () => this.open(this.panel.hidden));
    this.panel.querySelector("#devpanel-close").addEventListener("click", () => this.open(false));
    this.panel.querySelector("#devpanel-hour").addEventListener("click", () => this.advance(HOUR));
    this.panel.querySelector("#devpanel-day").addEventListener("click", () => this.advance(DAY));
    this.panel.querySelector("#devpanel-jump-go").addEventListener("click", () => this.jump());
    this.panel.querySelector("#devpanel-reset-clock").addEventListener("click", () =>
      this.call("/api/v1/dev/clock/reset", {}, "时钟已回到真实时间"));
    this.panel.querySelector("#devpanel-reset-data").addEventListener("click", () =>
      show(this.confirmBox, true));
    this.panel.querySelector("#devpanel-wipe-cancel").addEventListener("click", () =>
      show(this.confirmBox, false));
    this.panel.querySelector("#devpanel-wipe").addEventListener("click", () => this.wipe());
    this.reload.addEventListener("click", () => location.reload());
    if (stored(OPEN_KEY) === "1") this.open(true);
  }

  open(visible) {
    show(this.panel, visible);
    this.chip.setAttribute("aria-expanded", String(visible));
    remember(OPEN_KEY, visible ? "1" : null);
    if (visible) this._suggestJump();
  }

  /** Offer a day ahead of the clock unless a time still ahead of it was chosen. */
  _suggestJump() {
    const chosen = new Date(this.jumpInput.value);
    if (Number.isNaN(chosen.getTime()) || chosen <= this.now()) {
      this.jumpInput.value = localInputValue(new Date(this.now().getTime() + DAY * 1000));
    }
  }

  _tickClock() {
    this.clock.textContent = clockText(this.now());
  }

  _render() {
    this._tickClock();
    this.offsetLine.textContent = offsetText(this.offset);
    this._suggestJump();
    this.chip.textContent = Math.abs(this.offset) >= 60 ? `开发 · ${clockText(this.now()).slice(5)}` : "开发";
  }

  _say(text, isError = false) {
    this.message.textContent = text;
    this.message.dataset.error = isError ? "1" : "";
    show(this.message, Boolean(text));
  }

  async call(path, body, done) {
    this._say("");
    const buttons = [...this.panel.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    try {
      const state = await this.kpay.post(path, body);
      this.serverNow = new Date(state.now);
      this.readAt = performance.now();
      this.offset = state.offset;
      this._render();
      this._say(done);
      show(this.reload, true);
      window.dispatchEvent(new CustomEvent("kpay:clock", { detail: state }));
    } catch (error) {
      this._say(error?.status === 401 ? "请先登录再调整时钟" : errorText(error), true);
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }

  advance(seconds) {
    const words = seconds === DAY ? "1 天" : "1 小时";
    return this.call("/api/v1/dev/clock", { advance: seconds }, `时钟已前进 ${words}`);
  }

  jump() {
    const target = new Date(this.jumpInput.value);
    if (Number.isNaN(target.getTime())) return this._say("请选择要跳到的时间", true);
    const seconds = Math.round((target.getTime() - this.now().getTime()) / 1000);
    if (seconds <= 0) return this._say("时钟只能往后跳；要回到现在请用“重置时钟”", true);
    if (seconds > 366 * DAY) return this._say("最多往后跳一年", true);
    return this.call("/api/v1/dev/clock", { advance: seconds }, `已跳到 ${clockText(target)}`);
  }

  async wipe() {
    this._say("");
    try {
      await this.kpay.post("/api/v1/dev/reset", { confirm: "reset" });
      this.kpay.logout();
      location.href = "/";
    } catch (error) {
      this._say(error?.status === 401 ? "请先登录再重置数据" : errorText(error), true);
    }
  }
}

async function mount() {
  if (!wanted()) return;
  let state;
  try {
    const response = await fetch("/api/v1/dev/clock", { headers: { Accept: "application/json" } });
    if (!response.ok) return; // 404: dev mode is off
    state = await response.json();
  } catch {
    return;
  }
  if (document.readyState === "loading") {
    await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
  }
  if (!document.querySelector("#devpanel-root")) new DevPanel(state);
}

mount();
