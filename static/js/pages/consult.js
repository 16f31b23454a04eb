// The student's consultations (consult.html): pick a consultant (rate per minute, minimum
// minutes), request, wait for the accept, follow the meter from consult:<id> (tick,
// low_balance, paused / resumed, ended), end, see the summary; a voice call over WebRTC
// where the browser can; past consultations with their receipts.

import { KPay, formatFen } from "../kpay.js";
import { People } from "../people.js";
import { $, avatar, bindConnectionBadge, el, errorText, formatTime, show, showError, whileBusy } from "../ui.js";
import {
  END_REASON_TEXT, OPEN_STATUSES, STATUS_TEXT, VoiceCall, callErrorText, callSupported,
  shortfallText, summaryRows,
} from "./consult-call.js";

const kpay = new KPay();
const socket = kpay.socket();
const errorBox = $("#error");

let me = null;
let current = null; // the consultation shown in #session
let subscription = null;
let call = null;
const names = new People(kpay); // consultants' nicknames and avatars (history has ids only)
// profile.html's 发起咨询 links here with ?consultant=<id>: that one comes first, marked.
const chosen = new URLSearchParams(location.search).get("consultant");
let changes = 0; // events applied to `current`: a read that overlapped one may be older than it

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized"); // the home page says why
  location.href = "/";
});

async function start() {
  try {
    me = await kpay.me();
    show($("#loading"), false);
    if (!me) {
      show($("#need-login"), true);
      return;
    }
    if (me.role === "consultant") {
      // Consultants take requests in the console; only students request here.
      show($("#consultant-note"), true);
      return;
    }
    socket.connect();
    const { consultations } = await kpay.get("/api/v1/consultations?role=student&limit=20");
    const open = consultations.find((c) => OPEN_STATUSES.has(c.status));
    if (open) follow(open);
    await loadConsultants();
    renderHistory(consultations);
    show($("#consultants"), !open);
    show($("#history"), true);
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

// -- consultants and the request -------------------------------------------------------------

async function loadConsultants() {
  const { consultants } = await kpay.get("/api/v1/consultants?limit=50");
  names.remember(...consultants.map((c) => ({ id: c.consultant_id, name: c.name, avatar_url: c.avatar_url ?? null })));
  const list = $("#consultant-list");
  const first = (c) => (c.consultant_id === chosen ? 0 : 1);
  const shown = consultants.filter((c) => c.consultant_id !== me.id).sort((a, b) => first(a) - first(b));
  list.replaceChildren(...shown.map((c) => {
    const button = el("button", { class: "btn", type: "button", "aria-label": `向 ${c.name} 发起咨询` },
      c.busy ? "咨询中，请稍后" : "发起咨询");
    button.disabled = c.busy;
    button.addEventListener("click", () => whileBusy(button, () => request(c), "发起中…"));
    const profile = `/static/profile.html?id=${encodeURIComponent(c.consultant_id)}`;
    return el("li", { "data-id": c.consultant_id, class: c.consultant_id === chosen ? "chosen" : null },
      el("p", { class: "consultant-name" },
        el("a", { class: "person", href: profile, "aria-label": `${c.name} 的主页` },
          avatar({ id: c.consultant_id, name: c.name, avatar_url: c.avatar_url }, 40),
          el("strong", { class: "name" }, c.name)),
        c.title ? el("span", { class: "muted small" }, ` · ${c.title}`) : null),
      el("p", { class: "consultant-rate" },
        el("span", { class: "price" }, `${formatFen(c.rate_per_minute)}/分钟`),
        el("span", { class: "muted small" }, ` 最少 ${c.min_minutes} 分钟 · 最长 ${c.max_minutes} 分钟`)),
      button);
  }));
  show($("#consultants-empty"), list.children.length === 0);
  list.querySelector("li.chosen")?.scrollIntoView({ block: "center" });
}

async function request(consultant) {
  showRequestError(null);
  try {
    const { consultation } = await kpay.post("/api/v1/consultations",
      { consultant_id: consultant.consultant_id });
    consultation.consultant_name = consultant.name;
    follow(consultation);
    show($("#consultants"), false);
  } catch (error) {
    showRequestError(error);
  }
}

function showRequestError(error) {
  const region = $("#request-error");
  show(region, Boolean(error));
  if (!error) return;
  const short = error.code === "insufficient_balance";
  $("#request-error-text").textContent = short ? shortfallText(error) : errorText(error);
  region.dataset.code = error.code || "";
  show($("#request-topup"), short);
}

// -- the consultation ------------------------------------------------------------------------

/** Show `consultation` and follow its channel (subscribe at once: the grace period for
 * joining starts at the accept). */
function follow(consultation) {
  current = { ...consultation, balance: null, minutes_left: null };
  call?.hangUp();
  call = null;
  show($("#summary"), false);
  show($("#low-balance"), false);
  show($("#paused-note"), false);
  showError($("#session-error"), null);
  subscription?.unsubscribe();
  const id = consultation.id;
  subscription = socket.subscribe(`consult:${id}`, {
    onEvent: (frame) => {
      if (current?.id === id) onEvent(frame);
    },
    // What happened before the server confirmed the subscription (an accept racing
    // it) arrives by no event: read the state once it is live.
    onSubscribed: ({ resumed }) => {
      if (!resumed) refresh(id).catch((e) => showError($("#session-error"), e));
    },
    onResync: () => refresh(id).catch((e) => showError($("#session-error"), e)),
    onError: (error) => showError($("#session-error"), error),
  });
  setUpCall(id);
  render();
  show($("#session"), true);
  refresh(id).catch((e) => showError($("#session-error"), e)); // wallet and anything missed
}

async function refresh(id, attempts = 3) {
  const seen = changes;
  const [consultation, wallet] = await Promise.all([
    kpay.get(`/api/v1/consultations/${encodeURIComponent(id)}`), kpay.get("/api/v1/wallet"),
  ]);
  if (current?.id !== id) return;
  // An event applied while this read was on the way may be newer than what it read
  // (an accept racing the first read would be undone): read again instead.
  if (changes !== seen && attempts > 1) return refresh(id, attempts - 1);
  Object.assign(current, consultation);
  if (current.balance === null) current.balance = wallet.balance - wallet.held;
  if (current.status === "ended" && !current.summary) {
    current.summary = { ...consultation, billed_minutes: consultation.billed_minutes };
    current.reason = consultation.end_reason;
  }
  render();
}

function onEvent({ type, data }) {
  if (type === "accepted") {
    Object.assign(current, data.consultation);
  } else if (type === "tick") {
    Object.assign(current, {
      status: current.status === "paused" ? "active" : current.status === "requested" ? "active" : current.status,
      billed_minutes: data.minute, charged: data.charged, balance: data.balance,
      minutes_left: data.minutes_left,
    });
  } else if (type === "low_balance") {
    current.balance = data.balance;
    current.minutes_left = data.minutes_left;
    current.low = true;
  } else if (type === "paused") {
    current.status = "paused";
  } else if (type === "resumed") {
    current.status = "active";
  } else if (type === "ended") {
    current.status = "ended";
    current.reason = data.reason;
    current.summary = data.summary;
    call?.hangUp();
    loadHistory().catch(() => {});
    loadConsultants().catch(() => {});
  } else if (["offer", "answer", "ice"].includes(type)) {
    call?.handle({ type, data });
    return;
  }
  changes += 1;
  render();
}

function render() {
  const c = current;
  const state = $("#session-state");
  state.textContent = STATUS_TEXT[c.status] || c.status;
  state.dataset.status = c.status;
  $("#session-with").textContent = `咨询师 ${c.consultant_name || names.name(c.consultant_id, "")}`.trim();
  $("#session-rate").textContent =
    `${formatFen(c.rate_per_minute)}/分钟 · 最少 ${c.min_minutes} 分钟 · 最长 ${c.max_minutes} 分钟`;
  $("#meter-minute").textContent = `第 ${c.billed_minutes || 0} 分钟`;
  $("#meter-charged").textContent = formatFen(c.charged || 0);
  $("#meter-balance").textContent = c.balance === null ? "—" : formatFen(c.balance);
  $("#meter-left").textContent = c.minutes_left === null ? "—" : `${c.minutes_left} 分钟`;
  const ended = c.status === "ended";
  show($("#meter"), c.status === "active" || c.status === "paused");
  show($("#low-balance"), Boolean(c.low) && !ended);
  $("#low-balance-text").textContent = c.minutes_left === null ? "余额不足" :
    `余额不足：当前余额 ${formatFen(c.balance)}，还可通话 ${c.minutes_left} 分钟。充值后咨询不中断。`;
  show($("#paused-note"), c.status === "paused");
  $("#paused-note").textContent = "一方暂时离开，计费已暂停；双方回来后自动继续。";
  show($("#end"), c.status === "active" || c.status === "paused");
  show($("#cancel"), c.status === "requested");
  const supported = callSupported();
  show($("#call"), supported && (c.status === "active" || c.status === "paused"));
  show($("#call-unsupported"), !supported && !ended);
  show($("#summary"), ended && Boolean(c.summary));
  if (ended && c.summary) {
    $("#summary-reason").textContent = END_REASON_TEXT[c.reason] || c.reason || "咨询已结束";
    $("#summary-list").replaceChildren(...summaryRows(c.summary, "student"));
  }
}

async function endSession(button) {
  if (!current) return;
  await whileBusy(button, async () => {
    try {
      await kpay.post(`/api/v1/consultations/${encodeURIComponent(current.id)}/end`);
      await refresh(current.id); // the ended event brings the summary too
    } catch (error) {
      if (error.code !== "already_ended") showError($("#session-error"), error);
    }
  }, "正在结束…");
}

$("#end").addEventListener("click", (event) => endSession(event.currentTarget));
$("#cancel").addEventListener("click", (event) => endSession(event.currentTarget));
$("#new-request").addEventListener("click", () => {
  subscription?.unsubscribe();
  subscription = null;
  current = null;
  show($("#session"), false);
  show($("#consultants"), true);
  $("#consultants").scrollIntoView({ block: "start" });
});

// -- voice call ---------------------------------------------------------------------------

function setUpCall(id) {
  if (!callSupported()) return;
  call = new VoiceCall({
    socket, channel: `consult:${id}`, me: me.id, audio: $("#call-audio"),
    onState: (text) => { $("#call-state").textContent = text; },
    onIncoming: () => {
      $("#call-state").textContent = "咨询师发起了语音通话";
      show($("#call-answer"), true);
    },
  });
  $("#call-state").textContent = "语音通话未开始";
  show($("#call-answer"), false);
  show($("#call-hangup"), false);
  show($("#call-start"), true);
}

async function callAction(action) {
  try {
    await action();
    show($("#call-hangup"), true);
    show($("#call-answer"), false);
    show($("#call-start"), false);
  } catch (error) {
    $("#call-state").textContent = callErrorText(error);
  }
}

$("#call-start").addEventListener("click", () => call && callAction(() => call.call()));
$("#call-answer").addEventListener("click", () => call && callAction(() => call.answer()));
$("#call-hangup").addEventListener("click", () => {
  call?.hangUp();
  $("#call-state").textContent = "已挂断语音";
  show($("#call-hangup"), false);
  show($("#call-start"), true);
});

// -- history and receipts ---------------------------------------------------------------------

async function loadHistory() {
  const { consultations } = await kpay.get("/api/v1/consultations?role=student&limit=20");
  renderHistory(consultations);
}

function renderHistory(consultations) {
  const past = consultations.filter((c) => c.status === "ended");
  names.load(past.map((c) => c.consultant_id)).then((learnt) => learnt && renderHistory(consultations));
  $("#history-list").replaceChildren(...past.map((c) => {
    const receipt = el("div", { class: "receipt", hidden: true, id: `receipt-${c.id}` });
    const button = el("button", { class: "btn plain", type: "button", "aria-expanded": "false",
      "aria-controls": `receipt-${c.id}` }, "查看收据");
    button.addEventListener("click", () => toggleReceipt(c.id, button, receipt));
    return el("li", { "data-id": c.id },
      el("p", { class: "history-head" },
        names.badge(c.consultant_id, { size: 28, fallback: "咨询师" }),
        el("span", { class: "amount-out" }, formatFen(-c.charged))),
      el("p", { class: "muted small" },
        `${formatTime(c.requested_at)} · ${c.billed_minutes} 分钟 · ${END_REASON_TEXT[c.end_reason] || c.end_reason || ""}`),
      button, receipt);
  }));
  show($("#history-empty"), past.length === 0);
}

async function toggleReceipt(id, button, box) {
  const open = button.getAttribute("aria-expanded") === "true";
  button.setAttribute("aria-expanded", String(!open));
  show(box, !open);
  if (open || box.dataset.loaded) return;
  try {
    const { receipt } = await kpay.get(`/api/v1/consultations/${encodeURIComponent(id)}/receipt`);
    box.dataset.loaded = "1";
    box.replaceChildren(
      el("ul", { class: "entries" }, ...receipt.minutes.map((m) => el("li", {},
        el("span", {}, `第 ${m.minute} 分钟`, el("span", { class: "desc muted small" },
          m.charged_at ? formatTime(m.charged_at) : "免费")),
        el("span", { class: "amount-out" }, formatFen(-m.amount))))),
      ...receipt.adjustments.map((a) => el("p", { class: "small muted" }, `已用：${a.label}`)),
      el("p", { class: "small receipt-total" },
        `共 ${receipt.billed_minutes} 分钟，合计 ${formatFen(receipt.charged)}`
        + (receipt.discount > 0 ? `（已优惠 ${formatFen(receipt.discount)}）` : "")));
  } catch (error) {
    box.replaceChildren(el("p", { class: "alert", role: "alert" }, errorText(error)));
  }
}

start();
