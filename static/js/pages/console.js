// The consultant console (console.html): login check, the tabs, and one module per section.
// A section's module exports `mount(panel, context)` and fills its tabpanel; it is loaded
// the first time its tab opens. To add a section: its tab and tabpanel in console.html,
// an entry below, and js/pages/console-<name>.js.

import { mountBell } from "../bell.js";
import { loadEarnings } from "../earnings.js";
import { KPay, errorFromEnvelope } from "../kpay.js";
import { formatFen } from "../money.js";
import { $, bindConnectionBadge, show, showError } from "../ui.js";
import { onUserEvent } from "../user-channel.js";

/** Each section: the API path that shows its plugin is loaded, and its module (null: the
 * panel keeps its placeholder). */
const SECTIONS = {
  rooms: { needs: "/api/v1/rooms", load: () => import("./console-rooms.js") },
  consult: { needs: "/api/v1/consultations", load: () => import("./console-consult.js") },
  courses: { needs: "/api/v1/courses", load: () => import("./console-courses.js") },
  profile: { needs: "/api/v1/me", load: () => import("./console-profile.js") },
  audience: { needs: "/api/v1/segments", load: () => import("./console-audience.js") },
  analytics: { needs: "/api/v1/analytics/dashboard", load: () => import("./console-analytics.js") },
};

const kpay = new KPay();
const socket = kpay.socket();
const errorBox = $("#error");
const mounted = new Map(); // section -> promise of its mount
let context = null;
let payouts = null; // {refresh} of the 提现 block, once mounted

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized"); // the home page says why
  location.href = "/";
});

async function start() {
  try {
    const [user, dev, paths] = await Promise.all([
      kpay.me(), kpay.devEnabled(), kpay.apiPaths().catch(() => new Set()),
    ]);
    show($("#loading"), false);
    if (!user || user.role !== "consultant") {
      show($("#need-login"), true);
      show($("#not-consultant"), Boolean(user));
      return;
    }
    context = { kpay, socket, me: user, dev, errorBox, refreshEarnings };
    refreshEarnings();
    mountBell($("#bell"), { kpay, socket, me: user });
    // Sales, answered bounties, consultation minutes, refunds and payouts (on any page or
    // device) say earnings_changed; after missed events read everything again.
    onUserEvent(socket, user.id, {
      onEvent: (frame) => { if (frame.type === "earnings_changed") earningsChanged(); },
      onResync: earningsChanged,
    });
    if (paths.has("/api/v1/payouts")) {
      import("./console-payouts.js")
        .then(({ mountPayouts }) => mountPayouts($("#payouts"), { kpay, dev, onChange: refreshEarnings }))
        .then((mounted) => {
          payouts = mounted || null;
          // From the wallet page's 去提现: show the withdrawal form.
          if (location.hash === "#payouts") $("#payouts").scrollIntoView();
        })
        .catch((error) => showError(errorBox, error));
    }
    const tabs = tabButtons().filter((tab) => paths.has(SECTIONS[tab.dataset.section].needs));
    for (const tab of tabButtons()) show(tab, tabs.includes(tab));
    if (!tabs.length) {
      errorBox.textContent = "服务器未启用直播、咨询或课程功能";
      show(errorBox, true);
      return;
    }
    show($("#tabs"), true);
    socket.connect();
    const wanted = tabs.find((tab) => `#${tab.dataset.section}` === location.hash) || tabs[0];
    await select(wanted);
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

/** The earnings block above the tabs (and the spending wallet under it); sections call it
 * when they know money came in. Overlapping calls: only the latest answer is drawn. */
let earningsAsked = 0;
let moneyShown = false; // whether the first answer has set 提现与月度账单 open or folded
function refreshEarnings() {
  const mine = ++earningsAsked;
  loadEarnings(kpay).then((earnings) => {
    if (mine !== earningsAsked || !earnings) return; // no route on an older server: no block
    $("#console-earnings-balance").textContent = formatFen(earnings.balance);
    // First answer only: 提现与月度账单 opens when there is income (folded, a new
    // consultant sees the tabs first); later the consultant's own choice stays.
    if (!moneyShown) {
      moneyShown = true;
      if (earnings.balance !== 0) $("#console-money").open = true;
    }
    show($("#console-earnings"), true);
  }, () => {});
  kpay.get("/api/v1/wallet").then((wallet) => {
    if (mine !== earningsAsked) return;
    $("#console-wallet-balance").textContent = formatFen(wallet.balance);
    show($("#console-wallet"), true);
  }, () => {});
}

/** The server said the earnings changed: the figures and the 提现 block (可提现, history). */
function earningsChanged() {
  refreshEarnings();
  payouts?.refresh().catch(() => {});
}

/** "下载月度账单": the chosen month's statement (this month if none) as a CSV file. */
async function downloadStatement(event) {
  event.preventDefault();
  const month = $("#console-statement-month").value; // "YYYY-MM", or "" for this month
  const query = month ? `&month=${encodeURIComponent(month)}` : "";
  if (month && !(month >= "1970-01" && month <= "2200-12")) {
    errorBox.textContent = "账单月份须在 1970 年 1 月到 2200 年 12 月之间";
    show(errorBox, true);
    return;
  }
  try {
    const response = await fetch(`${kpay.base}/api/v1/earnings/statement?format=csv${query}`,
      { headers: { Authorization: `Bearer ${kpay.token}` } });
    if (!response.ok) {
      throw errorFromEnvelope(response.status, await response.json().catch(() => null));
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `kpay-statement-${month || "this-month"}.csv`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    showError(errorBox, error);
  }
}

$("#console-statement-download").addEventListener("click", downloadStatement);

function tabButtons() {
  return [...document.querySelectorAll('#tabs [role="tab"]')];
}

async function select(tab) {
  for (const other of tabButtons()) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    show($(`#${other.getAttribute("aria-controls")}`), chosen);
  }
  const name = tab.dataset.section;
  history.replaceState(null, "", `${location.pathname}${location.search}#${name}`);
  const section = SECTIONS[name];
  if (!section.load || mounted.has(name)) return;
  const panel = $(`#${tab.getAttribute("aria-controls")}`);
  const mounting = section.load().then((module) => module.mount(panel, context));
  mounted.set(name, mounting);
  try {
    await mounting;
  } catch (error) {
    mounted.delete(name);
    showError(errorBox, error);
  }
}

// Saving the 咨询 settings creates the consultant profile: the 资料 tab, drawn before it
// existed, mounts again when it next opens (then with 头衔 and 简介).
document.addEventListener("kpay:consultant-saved", () => {
  if ($("#tab-profile")?.getAttribute("aria-selected") !== "true") mounted.delete("profile");
});

$("#tabs").addEventListener("click", (event) => {
  const tab = event.target.closest('[role="tab"]');
  if (tab) select(tab);
});

// Arrow keys move between tabs (the WAI-ARIA tabs pattern).
$("#tabs").addEventListener("keydown", (event) => {
  if (!["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
  const tabs = tabButtons().filter((tab) => !tab.hidden);
  const at = tabs.indexOf(document.activeElement);
  if (at < 0) return;
  let next = at;
  if (event.key === "ArrowLeft") next = (at - 1 + tabs.length) % tabs.length;
  if (event.key === "ArrowRight") next = (at + 1) % tabs.length;
  if (event.key === "Home") next = 0;
  if (event.key === "End") next = tabs.length - 1;
  event.preventDefault();
  tabs[next].focus();
  select(tabs[next]);
});

start();
