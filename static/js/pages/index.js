// The entry page: who is logged in, dev login for newcomers, links to the feature pages
// (only those whose plugin routes the server has), the notification bell.

import { mountBell } from "../bell.js";
import { KPay } from "../kpay.js";
import {
  $, ROLE_NAMES, bindConnectionBadge, inWeChat, show, showError, whileBusy,
} from "../ui.js";
// The storefront (search, categories, rooms, courses, consultants) is its own module.
import { Storefront } from "./storefront-home.js";

const kpay = new KPay();
const socket = kpay.socket();
const errorBox = $("#error");
const store = new Storefront(kpay, errorBox);
const OAUTH_START = "/api/v1/wechat/oauth/start";

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized");
  render();
});

async function render() {
  try {
    const [user, dev, paths] = await Promise.all([
      kpay.me(), kpay.devEnabled(), kpay.apiPaths().catch(() => new Set()),
    ]);
    show($("#loading"), false);
    const ended = kpay.takeSessionEnd(); // blocked, logged out elsewhere, expired
    if (ended) showError(errorBox, { status: 401, code: ended });
    // The connection badge means something only to a logged-in user.
    show($("#connection"), Boolean(user));
    showAccount(user);
    show($("#dev-login"), !user && dev);
    show($("#need-login"), !user && !dev);
    // WeChat login needs the wechat_pay plugin, and WeChat's browser (or its dev fake).
    const oauth = paths.has(OAUTH_START);
    show($("#wechat-login"), oauth && inWeChat());
    show($("#open-in-wechat"), !inWeChat());
    show($("#dev-wechat-login"), oauth && dev);
    await store.show(user, paths, dev);
    showFeatures(user, paths);
    if (user) showBell(user);
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

function showAccount(user) {
  show($("#account"), Boolean(user));
  if (!user) return;
  $("#user-name").textContent = user.name || user.id;
  $("#user-role").textContent = ROLE_NAMES[user.role] || user.role;
  $("#user-id").textContent = user.id;
  $("#my-profile").href = `/static/profile.html?id=${encodeURIComponent(user.id)}`;
}

function showFeatures(user, paths) {
  show($("#features"), Boolean(user));
  if (!user) return;
  for (const node of document.querySelectorAll("[data-needs]")) {
    const wantedRole = node.dataset.role;
    const roleOk = !wantedRole || user.role === wantedRole || user.role === "admin";
    // data-needs: one path, or several separated by spaces (any of them will do).
    const needed = node.dataset.needs.split(" ").some((path) => paths.has(path));
    show(node, needed && roleOk);
  }
}

let bellFor = null;

function showBell(user) {
  if (bellFor === user.id) return;
  bellFor = user.id;
  mountBell($("#bell"), { kpay, socket, me: user });
  socket.connect();
}

$("#dev-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter;
  const role = button?.value === "consultant" ? "consultant" : "student";
  const typed = $("#dev-user-id").value.trim();
  const userId = typed || `demo-${role}`;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(userId)) {
    showError(errorBox, { code: "invalid_field", details: { field: "用户 ID" } });
    $("#dev-user-id").focus();
    return;
  }
  showError(errorBox, null);
  await whileBusy(button, async () => {
    try {
      await kpay.devLogin(userId, role, $("#dev-name").value.trim() || undefined);
      await render();
    } catch (error) {
      showError(errorBox, error);
    }
  }, "登录中…");
});

$("#logout").addEventListener("click", () => {
  kpay.logout();
  socket.close();
  show($("#bell"), false);
  bellFor = null;
  render();
});

render();
