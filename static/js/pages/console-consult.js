// The console's 咨询 section (console.html #panel-consult): the consultant's rate, minimum
// and maximum minutes and availability (PUT /consultants/me); incoming requests, live from
// consult_request on user:<id>, with accept / decline; the running meter from
// consult:<id>; end; the summary; the voice call (the consultant answers the student's
// call); earnings from GET /api/v1/earnings.

import { formatFen, parseYuan } from "../money.js";
import { People } from "../people.js";
import { $, el, formatTime, show, showError, whileBusy } from "../ui.js";
import { onUserEvent } from "../user-channel.js";
import {
  END_REASON_TEXT, STATUS_TEXT, VoiceCall, callErrorText, callSupported, summaryRows,
} from "./consult-call.js";

function layout() {
  const field = (id, label, input, hint) => el("div", { class: "field" },
    el("label", { for: id }, label), input, hint ? el("p", { class: "hint", id: `${id}-hint` }, hint) : null);
  return [
    el("section", { class: "card", id: "consult-session", "aria-labelledby": "consult-session-title", hidden: true },
      el("h2", { id: "consult-session-title" }, "进行中的咨询"),
      el("p", { class: "session-head" },
        el("span", { class: "state", id: "cs-state", role: "status", "data-status": "" }),
        el("span", { class: "muted small", id: "cs-with" })),
      el("dl", { class: "meter", id: "cs-meter", "aria-live": "polite" },
        el("div", {}, el("dt", {}, "第几分钟"), el("dd", { id: "cs-minute" }, "0")),
        el("div", {}, el("dt", {}, "学生已付"), el("dd", { id: "cs-charged" }, "¥0.00")),
        el("div", {}, el("dt", {}, "我的收入"), el("dd", { id: "cs-earned" }, "¥0.00")),
        el("div", {}, el("dt", {}, "学生余额可通话"), el("dd", { id: "cs-left" }, "—"))),
      el("p", { class: "warn", id: "cs-low", role: "status", hidden: true }),
      el("p", { class: "warn", id: "cs-paused", hidden: true }, "一方暂时离开，计费已暂停。"),
      el("div", { class: "alert", id: "cs-error", role: "alert", hidden: true }),
      el("div", { class: "call", id: "cs-call", hidden: true },
        el("p", { class: "small", id: "cs-call-state", role: "status" }, "等待学生发起语音通话"),
        el("button", { class: "btn", type: "button", id: "cs-call-answer", hidden: true }, "接听语音"),
        el("button", { class: "btn plain", type: "button", id: "cs-call-hangup", hidden: true }, "挂断语音"),
        el("audio", { id: "cs-call-audio", autoplay: true })),
      el("p", { class: "muted small", id: "cs-call-unsupported", hidden: true }, "此浏览器不支持语音通话"),
      el("button", { class: "btn plain", type: "button", id: "cs-end" }, "结束咨询"),
      el("div", { id: "cs-summary", hidden: true },
        el("h3", {}, "咨询小结"),
        el("p", { class: "notice", id: "cs-summary-reason" }),
        el("dl", { class: "stats", id: "cs-summary-list" }),
        el("button", { class: "btn secondary", type: "button", id: "cs-close" }, "关闭"))),

    el("section", { class: "card", id: "consult-requests", "aria-labelledby": "consult-requests-title" },
      el("h2", { id: "consult-requests-title" }, "咨询请求"),
      el("div", { class: "alert", id: "requests-error", role: "alert", hidden: true }),
      el("ul", { class: "consultant-list", id: "request-list", "aria-live": "polite" }),
      el("p", { class: "muted small", id: "requests-empty" }, "暂无新的咨询请求，学生发起后会实时出现在这里。")),

    el("section", { class: "card", id: "consult-earnings", "aria-labelledby": "consult-earnings-title" },
      el("h2", { id: "consult-earnings-title" }, "咨询收入"),
      el("dl", { class: "stats" },
        el("div", {}, el("dt", {}, "咨询收入合计"), el("dd", { id: "consult-earned-total" }, "¥0.00")),
        el("div", {}, el("dt", {}, "已完成咨询"), el("dd", { id: "consult-done-count" }, "0"))),
      el("h3", {}, "最近入账"),
      el("ul", { class: "entries", id: "consult-earnings-entries" }),
      el("p", { class: "muted small", id: "consult-earnings-empty" }, "暂无入账"),
      el("p", { class: "muted small" }, "已扣除平台服务费；合计按最近 50 次咨询。")),

    el("section", { class: "card", id: "consult-profile", "aria-labelledby": "consult-profile-title" },
      el("h2", { id: "consult-profile-title" }, "我的咨询设置"),
      el("form", { id: "profile-form", novalidate: true },
        field("profile-rate", "每分钟价格（元）",
          el("input", { id: "profile-rate", type: "text", inputmode: "decimal", autocomplete: "off",
            "aria-describedby": "profile-rate-hint" }), "例如 2 或 1.50"),
        el("div", { class: "release-fields" },
          field("profile-min", "最少分钟",
            el("input", { id: "profile-min", type: "number", inputmode: "numeric", min: "1", step: "1", value: "1" })),
          field("profile-max", "最长分钟",
            el("input", { id: "profile-max", type: "number", inputmode: "numeric", min: "1", step: "1", value: "60" }))),
        field("profile-title", "头衔（可选）",
          el("input", { id: "profile-title", type: "text", maxlength: "120" })),
        el("label", { class: "check field", for: "profile-available" },
          el("input", { id: "profile-available", type: "checkbox", checked: true }), "接受咨询"),
        el("div", { class: "alert", id: "profile-error", role: "alert", hidden: true }),
        el("p", { class: "notice", id: "profile-saved", role: "status", hidden: true }),
        el("button", { class: "btn", type: "submit", id: "profile-submit" }, "保存设置"))),

    el("section", { class: "card", id: "consult-past", "aria-labelledby": "consult-past-title" },
      el("h2", { id: "consult-past-title" }, "咨询记录"),
      el("ul", { class: "history", id: "consult-past-list" }),
      el("p", { class: "muted small", id: "consult-past-empty" }, "还没有咨询记录")),
  ];
}

/** Fill the consult panel. context: {kpay, socket, me, refreshEarnings?} (console.js). */
export async function mount(panel, { kpay, socket, me, refreshEarnings = () => {} }) {
  panel.replaceChildren(...layout());
  const q = (selector) => $(selector, panel);
  const requests = new Map(); // id -> consultation waiting for an answer
  let current = null;
  let subscription = null;
  let changes = 0; // events applied to `current` (see refresh)
  let call = null;
  const names = new People(kpay); // students' nicknames and avatars (the lists carry ids)
  const student = (c) => `学生 ${names.name(c.student_id, "")}`.trim();

  // -- profile ----------------------------------------------------------------------------

  async function loadProfile() {
    try {
      const { profile } = await kpay.get("/api/v1/consultants/me");
      q("#profile-rate").value = (profile.rate_per_minute / 100).toFixed(2);
      q("#profile-min").value = profile.min_minutes;
      q("#profile-max").value = profile.max_minutes;
      q("#profile-title").value = profile.title || "";
      q("#profile-available").checked = profile.available;
    } catch (error) {
      if (error.status !== 404) throw error; // 404: no profile yet, the form has defaults
    }
  }

  q("#profile-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const region = q("#profile-error");
    showError(region, null);
    show(q("#profile-saved"), false);
    const fail = (text, input) => {
      region.textContent = text;
      show(region, true);
      input.focus();
    };
    const rate = parseYuan(q("#profile-rate").value);
    if (!rate) return fail("每分钟价格不正确（大于 0，最多两位小数）", q("#profile-rate"));
    const wholeNumber = (input) => (/^\d{1,4}$/.test(input.value.trim()) ? Number(input.value) : null);
    const least = wholeNumber(q("#profile-min"));
    if (!least) return fail("最少分钟须为正整数", q("#profile-min"));
    const most = wholeNumber(q("#profile-max"));
    if (!most || most < least) return fail("最长分钟须为正整数且不少于最少分钟", q("#profile-max"));
    await whileBusy(q("#profile-submit"), async () => {
      try {
        const { profile } = await kpay.put("/api/v1/consultants/me", {
          rate_per_minute: rate, min_minutes: least, max_minutes: most,
          available: q("#profile-available").checked, title: q("#profile-title").value.trim(),
        });
        q("#profile-saved").textContent = `已保存：${formatFen(profile.rate_per_minute)}/分钟，` +
          `${profile.min_minutes}–${profile.max_minutes} 分钟，${profile.available ? "接受咨询" : "暂停接单"}`;
        show(q("#profile-saved"), true);
        // The 资料 tab shows 头衔 and 简介 only once these settings exist: have it drawn again.
        document.dispatchEvent(new CustomEvent("kpay:consultant-saved"));
      } catch (error) {
        showError(region, error);
      }
    }, "保存中…");
  });

  // -- requests -----------------------------------------------------------------------------

  function renderRequests() {
    const list = q("#request-list");
    names.load([...requests.values()].map((c) => c.student_id)).then((learnt) => learnt && renderRequests());
    list.replaceChildren(...[...requests.values()].map((c) => {
      const accept = el("button", { class: "btn", type: "button", "aria-label": `接受 ${names.name(c.student_id, "学生")} 的咨询请求` }, "接受");
      const decline = el("button", { class: "btn plain", type: "button", "aria-label": `婉拒 ${names.name(c.student_id, "学生")} 的咨询请求` }, "婉拒");
      accept.addEventListener("click", () => whileBusy(accept, () => answer(c, "accept"), "接受中…"));
      decline.addEventListener("click", () => whileBusy(decline, () => answer(c, "decline")));
      return el("li", { "data-id": c.id },
        el("p", { class: "request-head" }, names.badge(c.student_id, { size: 32, label: student(c) }),
          el("span", { class: "muted small" }, ` · ${formatTime(c.requested_at)}`)),
        el("p", { class: "small" }, `${formatFen(c.rate_per_minute)}/分钟，最少 ${c.min_minutes} 分钟`),
        el("div", { class: "course-actions" }, accept, decline));
    }));
    show(q("#requests-empty"), requests.size === 0);
  }

  async function answer(consultation, action) {
    showError(q("#requests-error"), null);
    try {
      const { consultation: updated } = await kpay.post(
        `/api/v1/consultations/${encodeURIComponent(consultation.id)}/${action}`);
      requests.delete(consultation.id);
      renderRequests();
      if (action === "accept") {
        if (current?.id === updated.id) {
          Object.assign(current, updated);
          render();
        } else {
          follow(updated);
        }
      } else {
        unfollowIf(consultation.id);
      }
    } catch (error) {
      showError(q("#requests-error"), error);
      if (error.status === 409 || error.status === 404) {
        requests.delete(consultation.id);
        renderRequests();
        unfollowIf(consultation.id);
      }
    }
  }

  function unfollowIf(id) {
    if (current?.id === id && current.status === "requested") dropCurrent();
  }

  /** Stop following the shown consultation; follow the next waiting request, if any. */
  function dropCurrent() {
    subscription?.unsubscribe();
    subscription = null;
    call?.hangUp();
    call = null;
    current = null;
    show(q("#consult-session"), false);
    const waiting = [...requests.values()][0];
    if (waiting) follow(waiting);
  }

  function personal({ type, data }) {
    if (type === "consult_request") {
      requests.set(data.consultation.id, data.consultation);
      renderRequests();
      // Join consult:<id> at once: the grace period for joining starts at the accept.
      if (!current || current.status === "ended") follow(data.consultation);
    } else if (type === "consult_ended") {
      if (requests.delete(data.consultation_id)) renderRequests();
      loadPast().catch(() => {});
    }
  }

  // -- the running consultation --------------------------------------------------------------

  /** Join consult:<id> and show the consultation once it runs (a request stays in the
   * list until it is accepted). */
  function follow(consultation) {
    current = { ...consultation, minutes_left: null, low: false };
    call?.hangUp();
    call = null;
    subscription?.unsubscribe();
    const id = consultation.id;
    subscription = socket.subscribe(`consult:${id}`, {
      onEvent: (frame) => {
        if (current?.id === id) onEvent(frame);
      },
      onResync: () => refresh(id).catch((e) => showError(q("#cs-error"), e)),
      onError: (error) => showError(q("#cs-error"), error),
    });
    if (callSupported()) {
      call = new VoiceCall({
        socket, channel: `consult:${id}`, me: me.id, audio: q("#cs-call-audio"),
        onState: (text) => { q("#cs-call-state").textContent = text; },
        onIncoming: () => {
          q("#cs-call-state").textContent = "学生发起了语音通话";
          show(q("#cs-call-answer"), true);
        },
      });
    }
    showError(q("#cs-error"), null);
    render();
  }

  async function refresh(id, attempts = 3) {
    const seen = changes;
    const consultation = await kpay.get(`/api/v1/consultations/${encodeURIComponent(id)}`);
    if (current?.id !== id) return;
    // An event applied meanwhile may be newer than this read: read again (consult.js).
    if (changes !== seen && attempts > 1) return refresh(id, attempts - 1);
    Object.assign(current, consultation);
    if (consultation.status === "ended" && !current.summary) {
      current.summary = consultation;
      current.reason = consultation.end_reason;
    }
    render();
  }

  function onEvent({ type, data }) {
    if (type === "accepted") {
      Object.assign(current, data.consultation);
    } else if (type === "tick") {
      const per = perMinute(current); // before the minute count moves on
      if (current.status !== "ended") current.status = "active";
      current.billed_minutes = data.minute;
      current.charged = data.charged;
      current.consultant_earned = data.minute * per;
      current.minutes_left = data.minutes_left;
      loadEarnings().catch(() => {}); // each minute is booked to the earnings at once
      refreshEarnings();
    } else if (type === "low_balance") {
      current.low = true;
      current.minutes_left = data.minutes_left;
    } else if (type === "paused") {
      current.status = "paused";
    } else if (type === "resumed") {
      current.status = "active";
    } else if (type === "ended") {
      requests.delete(current.id);
      renderRequests();
      loadPast().catch(() => {});
      if (!current.accepted_at) {
        dropCurrent(); // a request that ended unanswered: nothing to sum up
        return;
      }
      Object.assign(current, { status: "ended", reason: data.reason, summary: data.summary,
        consultant_earned: data.summary.consultant_earned });
      call?.hangUp();
      loadEarnings().catch(() => {});
      refreshEarnings();
    } else if (["offer", "answer", "ice"].includes(type)) {
      call?.handle({ type, data });
      return;
    }
    changes += 1;
    render();
  }

  /** The consultant's part of one minute: fixed at accept, the API gives it as totals. */
  function perMinute(c) {
    if (!c.earned_per_minute && c.billed_minutes > 0) {
      c.earned_per_minute = Math.floor((c.consultant_earned || 0) / c.billed_minutes);
    }
    return c.earned_per_minute || 0;
  }

  function render() {
    const c = current;
    const card = q("#consult-session");
    show(card, Boolean(c) && c.status !== "requested");
    if (!c) return;
    const state = q("#cs-state");
    state.textContent = STATUS_TEXT[c.status] || c.status;
    state.dataset.status = c.status;
    q("#cs-with").textContent = `${student(c)} · ${formatFen(c.rate_per_minute)}/分钟`;
    names.load([c.student_id]).then((learnt) => learnt && render());
    q("#cs-minute").textContent = `第 ${c.billed_minutes || 0} 分钟`;
    q("#cs-charged").textContent = formatFen(c.charged || 0);
    q("#cs-earned").textContent = formatFen(c.consultant_earned || 0);
    q("#cs-left").textContent = c.minutes_left === null ? "—" : `${c.minutes_left} 分钟`;
    const ended = c.status === "ended";
    q("#consult-session-title").textContent = ended ? "咨询已结束" : "进行中的咨询";
    show(q("#cs-meter"), !ended); // the summary says it all once it has ended
    show(q("#cs-low"), c.low && !ended);
    q("#cs-low").textContent = `学生余额不足，还可通话 ${c.minutes_left} 分钟`;
    show(q("#cs-paused"), c.status === "paused");
    show(q("#cs-end"), !ended);
    const supported = callSupported();
    show(q("#cs-call"), supported && !ended);
    show(q("#cs-call-unsupported"), !supported && !ended);
    show(q("#cs-summary"), ended && Boolean(c.summary));
    if (ended && c.summary) {
      q("#cs-summary-reason").textContent = END_REASON_TEXT[c.reason] || c.reason || "咨询已结束";
      q("#cs-summary-list").replaceChildren(...summaryRows(c.summary, "consultant"));
    }
  }

  q("#cs-end").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
    if (!current) return;
    try {
      await kpay.post(`/api/v1/consultations/${encodeURIComponent(current.id)}/end`);
      await refresh(current.id);
    } catch (error) {
      if (error.code !== "already_ended") showError(q("#cs-error"), error);
    }
  }, "正在结束…"));
  q("#cs-close").addEventListener("click", dropCurrent);
  q("#cs-call-answer").addEventListener("click", () => call && callStep(() => call.answer()));
  q("#cs-call-hangup").addEventListener("click", () => {
    call?.hangUp();
    q("#cs-call-state").textContent = "已挂断语音";
    show(q("#cs-call-hangup"), false);
  });

  async function callStep(step) {
    try {
      await step();
      show(q("#cs-call-answer"), false);
      show(q("#cs-call-hangup"), true);
    } catch (error) {
      q("#cs-call-state").textContent = callErrorText(error);
    }
  }

  // -- history and earnings -------------------------------------------------------------------

  async function loadPast() {
    const { consultations } = await kpay.get("/api/v1/consultations?role=consultant&limit=50");
    const past = consultations.filter((c) => c.status === "ended");
    await names.load(past.map((c) => c.student_id));
    q("#consult-past-list").replaceChildren(...past.map((c) => el("li", { "data-id": c.id },
      el("p", { class: "history-head" }, names.badge(c.student_id, { size: 28, label: student(c) }),
        el("span", { class: "amount-in" }, formatFen(c.consultant_earned, { sign: true }))),
      el("p", { class: "muted small" },
        `${formatTime(c.requested_at)} · ${c.billed_minutes} 分钟 · ${END_REASON_TEXT[c.end_reason] || c.end_reason || ""}`))));
    show(q("#consult-past-empty"), past.length === 0);
    q("#consult-done-count").textContent = String(past.filter((c) => c.billed_minutes > 0).length);
    q("#consult-earned-total").textContent = formatFen(
      past.reduce((sum, c) => sum + c.consultant_earned, 0));
    return consultations;
  }

  async function loadEarnings() {
    const { entries } = await kpay.get("/api/v1/earnings?limit=5");
    show(q("#consult-earnings-empty"), entries.length === 0);
    q("#consult-earnings-entries").replaceChildren(...entries.map((entry) => el("li", {},
      el("span", {}, entry.memo || "收入", el("span", { class: "desc muted small" }, formatTime(entry.created_at))),
      el("span", { class: entry.amount < 0 ? "amount-out" : "amount-in" }, formatFen(entry.amount, { sign: true })))));
  }

  // Shared with the console's bell and earnings (one subscription per channel).
  onUserEvent(socket, me.id, { onEvent: personal,
    onResync: () => loadOpen().catch((e) => showError(q("#requests-error"), e)) });

  async function loadOpen() {
    const consultations = await loadPast();
    for (const c of consultations) {
      if (c.status === "requested") requests.set(c.id, c);
    }
    renderRequests();
    const running = consultations.find((c) => c.status === "active" || c.status === "paused");
    const waiting = consultations.find((c) => c.status === "requested");
    if (running) follow(running);
    else if (waiting && !current) follow(waiting);
  }

  await Promise.all([loadProfile(), loadOpen(), loadEarnings()]);
}
