// /static/plugins/wechat_notify/: the user's consents to kpay's WeChat subscription
// templates (GET /api/v1/wechat-notify/consents). Consent comes from WeChat's own
// dialog (wx-open-subscribe, inside WeChat); in dev mode outside WeChat, 模拟同意 /
// 模拟拒绝 record an answer as the dialog would. docs/wechat_notify.md "WeChat's rules".

import { KPay } from "/static/js/kpay.js";
import { $, el, inWeChat, show, showError, whileBusy } from "/static/js/ui.js";
import { wechatSdk } from "/static/js/wechat.js";

const kpay = new KPay();
const KIND_NAMES = {
  room_starting: ["直播开播提醒", "你购票的直播开始前 15 分钟提醒你"],
  audience_message: ["老师的消息", "你关注的老师和平台发给你的通知"],
  lesson_unlocked: ["课程更新提醒", "课程有新的一讲解锁时提醒你"],
  consult_request: ["咨询请求提醒", "有学员向你发起咨询时提醒你"],
  consult_accepted: ["咨询接受提醒", "咨询师接受你的咨询时提醒你"],
  order_refunded: ["退款提醒", "订单退款时提醒你"],
  payout_waiting_confirmation: ["提现确认提醒", "提现需要你在微信中确认收款时提醒你"],
};

async function devMode() {
  try {
    await kpay.get("/api/v1/dev/clock");
    return true;
  } catch {
    return false;
  }
}

/** The answers in a wx-open-subscribe success event: {template_id: true|false}; a
 * template closed without a choice is left out. WeChat gives subscribeDetails as a JSON
 * string whose values are JSON strings with a status (accept, reject, ...). */
export function answersOf(detail) {
  const answers = {};
  let details = detail?.subscribeDetails;
  try {
    if (typeof details === "string") details = JSON.parse(details);
  } catch {
    return answers;
  }
  for (const [templateId, value] of Object.entries(details || {})) {
    let status = value;
    try {
      if (typeof value === "string" && value.startsWith("{")) status = JSON.parse(value).status;
      else if (value && typeof value === "object") status = value.status;
    } catch {
      continue;
    }
    if (status === "accept") answers[templateId] = true;
    else if (status === "reject" || status === "ban" || status === "filter") {
      answers[templateId] = false;
    }
  }
  return answers;
}

/** WeChat's own subscribe button for one template (rendered by the JS-SDK). */
function openTag(consent, dev) {
  const tag = document.createElement("wx-open-subscribe");
  tag.setAttribute("template", consent.template_id);
  tag.setAttribute("aria-label", "开启提醒");
  const look = document.createElement("script");
  look.type = "text/wxtag-template";
  look.textContent = "<button>开启提醒</button>";
  tag.append(look);
  tag.addEventListener("success", async (event) => {
    const accepted = answersOf(event.detail)[consent.template_id];
    if (accepted === undefined) {
      // On phones the event's detail is often empty: WeChat's own push to the server
      // (docs/wechat_notify.md "Consents from WeChat") tells what was chosen.
      await confirmFromServer(consent, dev);
      return;
    }
    try {
      const body = await kpay.post("/api/v1/wechat-notify/consents",
        { template_id: consent.template_id, accepted });
      render(body.consents, dev);
    } catch (error) {
      showError($("#error"), error);
    }
  });
  tag.addEventListener("error", () => {
    showError($("#error"), new Error("微信订阅暂时不可用，请稍后再试"));
  });
  return tag;
}

let sdkReady = false;

/** Read the consents again a few times until the server has WeChat's word on
 * ``consent`` (its push comes within seconds), showing that it is being confirmed. */
async function confirmFromServer(consent, dev) {
  const note = $("#confirming");
  show(note);
  try {
    for (const wait of [1500, 3000, 5000]) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      const body = await kpay.get("/api/v1/wechat-notify/consents");
      render(body.consents, dev);
      if (body.consents.some((c) => c.template_id === consent.template_id && c.accepted)) return;
    }
  } catch (error) {
    showError($("#error"), error);
  } finally {
    show(note, false);
  }
}

function row(consent, dev) {
  const [name, about] = KIND_NAMES[consent.kind] || ["消息提醒", ""];
  const state = el("span", { class: "badge", "data-state": consent.accepted ? "online" : "" },
    consent.accepted ? "已开启" : "未开启");
  const actions = el("span", { class: "consent-actions" });
  const answer = (accepted) => async (event) => {
    await whileBusy(event.currentTarget, async () => {
      try {
        const body = await kpay.post("/api/v1/wechat-notify/consents",
          { template_id: consent.template_id, accepted });
        render(body.consents, dev);
      } catch (error) {
        showError($("#error"), error);
      }
    });
  };
  if (dev && !inWeChat()) {
    const yes = el("button", { class: "btn small-btn", type: "button" }, "模拟同意");
    const no = el("button", { class: "btn plain small-btn", type: "button" }, "模拟拒绝");
    yes.addEventListener("click", answer(true));
    no.addEventListener("click", answer(false));
    actions.append(yes, no);
  } else if (!inWeChat()) {
    actions.append(el("span", { class: "muted small" }, "请在微信中打开本页开启"));
  } else if (sdkReady && !consent.accepted) {
    actions.append(openTag(consent, dev));
  }
  return el("li", {},
    el("span", { class: "consent-text" },
      el("span", { class: "consent-name" }, name, state),
      el("span", { class: "muted small" }, about)),
    actions);
}

function render(consents, dev) {
  const list = $("#consent-list");
  list.replaceChildren(...consents.map((consent) => row(consent, dev)));
  show($("#consent-empty"), consents.length === 0);
}

async function main() {
  if (!kpay.token) {
    show($("#loading"), false);
    show($("#need-login"));
    return;
  }
  try {
    const [body, dev] = await Promise.all([kpay.get("/api/v1/wechat-notify/consents"),
      devMode()]);
    if (inWeChat()) {
      try {
        sdkReady = Boolean(await wechatSdk(kpay, [], ["wx-open-subscribe"]));
      } catch (error) {
        showError($("#error"), error);
      }
    }
    render(body.consents, dev);
    show($("#consents"));
  } catch (error) {
    showError($("#error"), error);
  } finally {
    show($("#loading"), false);
  }
}

main();
