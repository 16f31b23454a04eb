// The wallet page: balance and held, top-up through WeChat Pay (or the dev simulator),
// the ledger with "加载更多" paging.

import { mountEarningsCard } from "../earnings.js";
import { KPay, formatFen, parseYuan } from "../kpay.js";
import { PAID_STATUSES, PaymentPanel, safeReturnPath } from "../pay.js";
import { $, bindConnectionBadge, el, formatTime, show, showError, whileBusy } from "../ui.js";

const LEDGER_PAGE = 20;

const kpay = new KPay();
const socket = kpay.socket();
const errorBox = $("#error");
let panel = null;
let refreshEarnings = async () => {}; // consultants: the 我的收入 card
let oldestShown = null; // created_at of the last ledger entry shown: the next page's `before`
// Where to go back after topping up (?return=, from a course or room page): checked to be
// a path on this site, so a crafted link cannot send the payer elsewhere.
const returnPath = safeReturnPath(new URLSearchParams(location.search).get("return"));

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized"); // the home page says why
  location.href = "/";
});

async function start() {
  try {
    const [user, dev] = await Promise.all([kpay.me(), kpay.devEnabled()]);
    if (!user) {
      show($("#need-login"), true);
      return;
    }
    for (const id of ["#wallet", "#topup", "#ledger"]) show($(id), true);
    panel = new PaymentPanel($("#payment"), { kpay, dev, onPaid: paid, returnUrl: backFromWeChat });
    show($("#return-hint"), Boolean(returnPath));
    if (user.role === "consultant") refreshEarnings = mountEarningsCard($("#earnings-card"), { kpay });
    await Promise.all([loadWallet(), loadLedger(true), refreshEarnings()]);
    // Anything told to this user (refunds, paid orders...) may change the balance.
    socket.subscribe(`user:${user.id}`, { onEvent: refresh, onResync: refresh });
    socket.connect();
    const returning = new URLSearchParams(location.search).get("order");
    if (returning) {
      // Back from WeChat H5 pay: the order may already be paid (then no change comes).
      const order = await panel.resume(returning);
      if (PAID_STATUSES.has(order.status)) await paid(order);
    }
  } catch (error) {
    showError(errorBox, error);
  }
}

/** Where WeChat H5 pay sends the payer back: this page watching the order, keeping ?return=. */
function backFromWeChat(order) {
  const query = new URLSearchParams({ order: order.id });
  if (returnPath) query.set("return", returnPath);
  return `${location.origin}${location.pathname}?${query}`;
}

async function loadWallet() {
  const wallet = await kpay.get("/api/v1/wallet");
  $("#balance").textContent = formatFen(wallet.balance);
  $("#held").textContent = formatFen(wallet.held);
  $("#available").textContent = formatFen(wallet.available ?? wallet.balance - wallet.held);
}

async function loadLedger(reset) {
  let path = `/api/v1/wallet/ledger?limit=${LEDGER_PAGE}`;
  if (!reset && oldestShown) path += `&before=${encodeURIComponent(oldestShown)}`;
  const { entries } = await kpay.get(path);
  const list = $("#entries");
  if (reset) list.replaceChildren();
  for (const entry of entries) list.append(ledgerLine(entry));
  if (entries.length) oldestShown = entries[entries.length - 1].created_at;
  else if (reset) oldestShown = null;
  show($("#entries-empty"), list.children.length === 0);
  show($("#more"), entries.length === LEDGER_PAGE);
}

function ledgerLine(entry) {
  return el("li", { "data-key": entry.key },
    el("span", {}, entry.memo || "账户变动",
      el("span", { class: "desc muted small" }, ` ${formatTime(entry.created_at)}`)),
    el("span", { class: entry.amount >= 0 ? "amount-in" : "amount-out" },
      formatFen(entry.amount, { sign: true })));
}

async function refresh() {
  try {
    await Promise.all([loadWallet(), loadLedger(true), refreshEarnings()]);
  } catch (error) {
    showError(errorBox, error);
  }
}

async function paid(order) {
  showError($("#topup-error"), null);
  await refresh();
  if (order.kind === "wallet_topup") {
    $("#topup-amount").value = "";
    for (const chip of document.querySelectorAll(".chips button")) {
      chip.setAttribute("aria-pressed", "false");
    }
    if (returnPath) {
      $("#return-link").href = returnPath;
      show($("#return-box"), true);
      show($("#return-hint"), false);
      $("#return-box").scrollIntoView({ block: "start" });
    }
  }
}

// -- top-up form ----------------------------------------------------------------------

for (const chip of document.querySelectorAll(".chips button")) {
  chip.addEventListener("click", () => {
    $("#topup-amount").value = chip.dataset.yuan;
    for (const other of document.querySelectorAll(".chips button")) {
      other.setAttribute("aria-pressed", String(other === chip));
    }
  });
}

$("#topup-amount").addEventListener("input", () => {
  for (const chip of document.querySelectorAll(".chips button")) {
    chip.setAttribute("aria-pressed", String(chip.dataset.yuan === $("#topup-amount").value));
  }
});

$("#topup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const errorRegion = $("#topup-error");
  const amount = parseYuan($("#topup-amount").value);
  if (amount === null || amount <= 0) {
    errorRegion.textContent = "请输入正确的金额（大于 0，最多两位小数）";
    errorRegion.dataset.code = "bad_amount";
    show(errorRegion, true);
    $("#topup-amount").focus();
    return;
  }
  showError(errorRegion, null);
  await whileBusy($("#topup-submit"), async () => {
    try {
      await panel.start({ kind: "wallet_topup", amount });
    } catch (error) {
      if (error.code === "no_channel") {
        errorRegion.textContent = "暂无可用的支付方式，请稍后再试";
        errorRegion.dataset.code = "no_channel";
        show(errorRegion, true);
      } else {
        showError(errorRegion, error);
      }
    }
  }, "正在创建订单…");
});

$("#more").addEventListener("click", (event) => {
  whileBusy(event.currentTarget, () => loadLedger(false).catch((e) => showError(errorBox, e)),
    "加载中…");
});

start();
