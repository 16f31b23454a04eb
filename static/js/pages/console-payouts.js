// The console's withdrawals (提现), under 我的收入 (console.html #payouts): what can be
// withdrawn now and when the rest frees up (GET /api/v1/earnings/summary), the form
// (POST /api/v1/payouts), the history with its states (GET /api/v1/payouts), and for a
// transfer waiting for the consultant, 确认收款: wx.requestMerchantTransfer with the
// payout's package_info inside WeChat, the dev confirm route in dev mode. A withdrawal
// that needs the receiver's real name (409 real_name_required: 2,000 yuan and more
// through WeChat Pay) asks for it (PUT /api/v1/payouts/real-name), saves it and sends
// the same withdrawal again; the saved name is shown masked (GET, "张*三").

import { wechatSdk } from "../wechat.js";
import { formatFen, parseYuan } from "../money.js";
import { $, el, errorText, formatTime, show, whileBusy } from "../ui.js";

export const STATUS_TEXT = {
  requested: "处理中",
  sending: "处理中",
  awaiting_approval: "待审核",
  waiting_confirmation: "待确认收款",
  succeeded: "已到账",
  failed: "已退回",
  cancelled: "已退回",
  expired: "已过期",
};

/** Chinese for the refusals of POST /api/v1/payouts (others: ui.js errorText). */
export function payoutErrorText(error) {
  const d = error?.details || {};
  const fen = (value) => (Number.isSafeInteger(value) ? formatFen(value) : "");
  switch (error?.code) {
    case "payout_below_minimum":
      return `单笔至少提现 ${fen(d.min_amount)}`;
    case "payout_daily_limit":
      return `超过每日提现上限，今天还可提现 ${fen(d.left_today)}`;
    case "not_withdrawable":
      return `可提现金额不足，当前可提现 ${fen(d.withdrawable)}`;
    case "negative_earnings":
      return "收入为负（提现后发生了退款），需由之后的收入补足后才能提现";
    case "openid_required":
      return "请先用微信登录一次，提现将转入该微信账号";
    case "payouts_unavailable":
      return "暂不支持提现，请联系客服";
    case "payout_not_cancellable":
      return "该提现已无法取消";
    case "real_name_required":
      return "微信要求 2000 元以上的转账核验收款人实名，请先填写真实姓名";
    case "invalid_real_name":
      return "请填写 2-30 个汉字或字母的真实姓名（可含间隔号 ·）";
    default:
      return errorText(error);
  }
}

/** "3月17日" from a Beijing date "2026-03-17" (the summary's free-up dates). */
function dayText(date) {
  const [, month, day] = date.split("-").map(Number);
  return `${month}月${day}日`;
}

/** Fill `root` (console.html #payouts). context: {kpay, dev, onChange}. */
export function mountPayouts(root, { kpay, dev, onChange = () => {} }) {
  const input = el("input", { id: "payout-amount", name: "amount", inputmode: "decimal",
    autocomplete: "off", placeholder: "0.00", "aria-describedby": "payout-limits" });
  const submit = el("button", { class: "btn", type: "submit", id: "payout-submit" }, "提现");
  const error = el("div", { class: "alert", role: "alert", id: "payout-error", hidden: true });
  const notice = el("p", { class: "notice", role: "status", id: "payout-notice", hidden: true });
  const form = el("form", { id: "payout-form", novalidate: true },
    el("div", { class: "field" }, el("label", { for: "payout-amount" }, "提现金额（元）"), input),
    el("p", { class: "muted small", id: "payout-limits" }),
    error, notice, submit);
  const nameInput = el("input", { id: "real-name", name: "real_name", autocomplete: "name",
    maxlength: "30", "aria-describedby": "real-name-why" });
  const nameSubmit = el("button", { class: "btn", type: "submit", id: "real-name-submit" },
    "保存并提现");
  const nameForm = el("form", { id: "real-name-form", novalidate: true, hidden: true },
    el("p", { class: "muted small", id: "real-name-why" },
      "微信要求 2000 元以上的转账核验收款人实名，请填写与微信实名一致的姓名。" +
      "姓名仅用于提现，不会公开。"),
    el("div", { class: "field" }, el("label", { for: "real-name" }, "真实姓名"), nameInput),
    nameSubmit);
  const nameText = el("span", { id: "real-name-masked" });
  const nameChange = el("button", { class: "btn plain", type: "button", id: "real-name-change" },
    "修改");
  const nameShown = el("p", { class: "muted small", id: "real-name-shown", hidden: true },
    nameText, " ", nameChange);
  const list = el("ul", { class: "entries payouts", id: "payout-history", "aria-label": "提现记录" });
  const empty = el("p", { class: "muted small", id: "payout-empty" }, "暂无提现记录");
  root.replaceChildren(
    el("dl", { class: "stats" },
      el("div", {}, el("dt", {}, "可提现"), el("dd", { id: "payout-withdrawable" }, "¥0.00")),
      el("div", {}, el("dt", {}, "待结算"), el("dd", { id: "payout-pending" }, "¥0.00"))),
    el("p", { class: "muted small", id: "payout-frees" }),
    form, nameForm, nameShown,
    el("h3", {}, "提现记录"), list, empty);

  let summary = null;
  let waitingFen = null; // the withdrawal that waits for the real name

  function showName(masked) {
    nameText.textContent = masked ? `收款人实名：${masked}` : "";
    show(nameShown, Boolean(masked));
  }

  nameChange.addEventListener("click", () => askName(null));

  async function loadName() {
    showName((await kpay.get("/api/v1/payouts/real-name")).real_name);
  }

  function say(message, isError) {
    error.textContent = isError ? message : "";
    show(error, Boolean(isError && message));
    notice.textContent = isError ? "" : message;
    show(notice, Boolean(!isError && message));
  }

  async function loadSummary() {
    summary = await kpay.get("/api/v1/earnings/summary");
    $("#payout-withdrawable", root).textContent = formatFen(summary.withdrawable);
    $("#payout-pending", root).textContent = formatFen(summary.pending);
    $("#payout-frees", root).textContent = summary.frees.length
      ? summary.frees.map((f) => `${dayText(f.date)}可提现 ${formatFen(f.amount)}`).join("，")
      : `收入在入账 ${summary.hold_days} 天后可提现`;
    const left = Math.max(0, summary.max_per_day - summary.withdrawn_today);
    $("#payout-limits", root).textContent =
      `单笔最低 ${formatFen(summary.min_amount)}，今日还可提现 ${formatFen(left)}`;
  }

  function row(payout) {
    const item = el("li", { "data-status": payout.status, "data-id": payout.id },
      el("span", { class: "amount-out" }, formatFen(payout.amount)),
      el("span", { class: "state" }, STATUS_TEXT[payout.status] || payout.status),
      el("span", { class: "muted small" }, formatTime(payout.created_at)));
    if (payout.status === "waiting_confirmation") {
      const confirm = el("button", { class: "btn", type: "button" }, "确认收款");
      confirm.addEventListener("click", () => whileBusy(confirm, () => receive(payout))
        .catch((e) => say(payoutErrorText(e), true)));
      item.append(confirm);
    }
    return item;
  }

  async function loadHistory() {
    const { payouts } = await kpay.get("/api/v1/payouts?limit=20");
    list.replaceChildren(...payouts.map(row));
    show(empty, payouts.length === 0);
  }

  async function refresh() {
    await Promise.all([loadSummary(), loadHistory(), loadName().catch(() => {})]);
    onChange();
  }

  /** 确认收款: WeChat's own confirmation page; in dev mode the dev confirm route. */
  async function receive(payout) {
    // Inside WeChat the JS-SDK is loaded and configured for this page first.
    const wx = window.wx || await wechatSdk(kpay, ["requestMerchantTransfer"]).catch(() => null);
    if (wx && typeof wx.requestMerchantTransfer === "function") {
      await new Promise((resolve, reject) => wx.requestMerchantTransfer({
        ...payout.confirm_params, // mchId, appId: the provider's
        package: payout.package_info,
        success: resolve,
        fail: (result) => reject(new Error(result?.errMsg || "requestMerchantTransfer failed")),
      }));
      say("已提交确认，到账后记录会更新", false);
      setTimeout(() => refresh().catch(() => {}), 2000); // the transfer notify books it
      return;
    }
    if (dev) {
      await kpay.post(`/api/v1/dev/payouts/${payout.id}/confirm`);
      say("已确认收款（开发模式）", false);
      await refresh();
      return;
    }
    say("请在微信中打开本页，确认收款", true);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const fen = parseYuan(input.value);
    if (fen === null || fen <= 0) {
      say("请输入正确的金额（最多两位小数）", true);
      return;
    }
    if (summary && fen < summary.min_amount) {
      say(`单笔至少提现 ${formatFen(summary.min_amount)}`, true);
      return;
    }
    whileBusy(submit, () => withdraw(fen), "提交中…").catch((e) => {
      if (e?.code === "real_name_required") askName(fen);
      say(payoutErrorText(e), true);
    });
  });

  async function withdraw(fen) {
    const { payout } = await kpay.post("/api/v1/payouts", { amount: fen });
    input.value = "";
    say(payout.status === "awaiting_approval" ? "提现申请已提交，等待审核"
      : payout.status === "failed" ? "提现未成功，金额已退回" : "提现已发起", false);
    await refresh();
  }

  function askName(fen) {
    waitingFen = fen;
    show(nameForm, true);
    nameInput.focus();
  }

  nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!/^[\u3400-\u9fffA-Za-z·]{2,30}$/.test(name)) {
      say(payoutErrorText({ code: "invalid_real_name" }), true);
      return;
    }
    whileBusy(nameSubmit, async () => {
      const saved = await kpay.put("/api/v1/payouts/real-name", { real_name: name });
      nameInput.value = "";
      show(nameForm, false);
      showName(saved.real_name);
      const fen = waitingFen;
      waitingFen = null;
      if (fen !== null) await withdraw(fen); // the same withdrawal, now with the name
      else say("实名已保存", false);
    }, "保存中…").catch((e) => say(payoutErrorText(e), true));
  });

  // {refresh}: console.js reads the block again when the server says earnings changed.
  return refresh().then(() => ({ refresh }));
}
