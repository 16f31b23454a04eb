// admin.html, the operators' console (docs/pages.md "Admin console"): admins only (others
// see 无权限); tabs 用户 (admin-users.js), 待处理 and 操作日志 (admin-logs.js). The
// socket only keeps the admin's own session honest: a block or demotion ends the page.

import { KPay } from "../kpay.js";
import { People } from "../people.js";
import { $, bindConnectionBadge, el, show, showError } from "../ui.js";
import { mountLogs } from "./admin-logs.js";
import { mountUsers } from "./admin-users.js";

const kpay = new KPay();
const socket = kpay.socket();
const errorBox = $("#error");

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized"); // the home page says why
  location.href = "/";
});

/** Say that something was done (a status line above the page). */
function done(text) {
  showError(errorBox, null);
  $("#done").textContent = text;
  show($("#done"), Boolean(text));
}

/** Ask in the page (no browser dialog: WeChat shows those with the site's address).
 * `fields`: [{name, label, value, maxlength, inputmode}]. Resolves to the fields' values
 * ({} without fields), or null when cancelled. */
function ask({ title, text, ok = "确定", danger = false, fields = [] }) {
  const box = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  const inputs = fields.map((field) => el("input", {
    id: `confirm-${field.name}`, name: field.name, value: field.value ?? "",
    maxlength: field.maxlength ?? 200, inputmode: field.inputmode, autocomplete: "off",
    required: true,
  }));
  $("#confirm-fields").replaceChildren(...fields.map((field, at) => el("div", { class: "field" },
    el("label", { for: `confirm-${field.name}` }, field.label), inputs[at])));
  const okButton = $("#confirm-ok");
  okButton.textContent = ok;
  okButton.classList.toggle("danger", danger);
  show(box, true);
  box.scrollIntoView({ block: "center" });
  (inputs[0] || okButton).focus();
  return new Promise((resolve) => {
    const finish = (answer) => {
      show(box, false);
      $("#confirm-form").removeEventListener("submit", submitted);
      $("#confirm-cancel").removeEventListener("click", cancelled);
      resolve(answer);
    };
    const submitted = (event) => {
      event.preventDefault();
      finish(Object.fromEntries(inputs.map((input) => [input.name, input.value.trim()])));
    };
    const cancelled = () => finish(null);
    $("#confirm-form").addEventListener("submit", submitted);
    $("#confirm-cancel").addEventListener("click", cancelled);
  });
}

const sections = {};

function tabButtons() {
  return [...document.querySelectorAll('#tabs [role="tab"]')];
}

function select(tab) {
  for (const other of tabButtons()) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    show($(`#${other.getAttribute("aria-controls")}`), chosen);
  }
  done("");
  const name = tab.dataset.section;
  sections[name]?.().catch((error) => showError(errorBox, error));
}

async function start() {
  try {
    const me = await kpay.me();
    show($("#loading"), false);
    if (!me || me.role !== "admin") {
      show($("#denied"), true);
      return;
    }
    const context = { kpay, people: new People(kpay), errorBox, ask, done, me };
    context.people.remember(me);
    sections.users = mountUsers(context);
    Object.assign(sections, mountLogs(context));
    // Tags, segments and messages: the consultants' 学员 panel, for the whole platform.
    let audience = null;
    sections.audience = () => (audience ??= import("./console-audience.js").then(
      (module) => module.mountAudience($("#panel-audience"), { kpay, me, scope: "platform" })));
    let analytics = null;
    sections.analytics = () => (analytics ??= import("./console-analytics.js").then(
      (module) => module.mountAnalytics($("#panel-analytics"), { kpay, scope: "platform" })));
    show($("#tabs"), true);
    const wanted = tabButtons().find((tab) => `#${tab.dataset.section}` === location.hash);
    select(wanted || tabButtons()[0]);
    socket.connect();
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

$("#tabs").addEventListener("click", (event) => {
  const tab = event.target.closest('[role="tab"]');
  if (tab) select(tab);
});

// Arrow keys move between tabs (the WAI-ARIA tabs pattern).
$("#tabs").addEventListener("keydown", (event) => {
  const tabs = tabButtons();
  const at = tabs.indexOf(document.activeElement);
  if (at < 0) return;
  let next = null;
  if (event.key === "ArrowLeft") next = (at - 1 + tabs.length) % tabs.length;
  if (event.key === "ArrowRight") next = (at + 1) % tabs.length;
  if (next === null) return;
  event.preventDefault();
  tabs[next].focus();
  select(tabs[next]);
});

start();
