// admin.html, tab 用户: search users (nickname, id, openid; role chips), then one user's
// detail (admin-user.js). docs/pages.md "Admin console".

import { $, avatar, el, ROLE_NAMES, show, showError, whileBusy } from "../ui.js";
import { mountUser } from "./admin-user.js";

const PAGE = 20;

export function mountUsers(context) {
  const { kpay, errorBox } = context;
  const list = $("#user-list");
  let role = "";
  let nextCursor = null;
  let loaded = false;

  const detail = mountUser(context, {
    onClose: () => {
      show($("#user-detail"), false);
      show($("#user-search"), true);
    },
    onChanged: () => search(true).catch((error) => showError(errorBox, error)),
  });

  function row(user) {
    const badges = [el("span", { class: "badge" }, ROLE_NAMES[user.role] || "用户")];
    if (user.blocked) badges.push(el("span", { class: "badge blocked" }, "已封禁"));
    if (user.anonymised) badges.push(el("span", { class: "badge" }, "已注销"));
    const button = el("button", { type: "button", class: "admin-user", "data-id": user.id },
      avatar(user, 40),
      el("span", { class: "admin-user-text" },
        el("span", { class: "name" }, user.name), el("span", { class: "admin-badges" }, badges)));
    button.addEventListener("click", () => open(user.id).catch((error) => showError(errorBox, error)));
    return el("li", {}, button);
  }

  async function search(first) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    const q = $("#search-q").value.trim();
    if (q) query.set("q", q);
    if (role) query.set("role", role);
    if (!first && nextCursor) query.set("cursor", nextCursor);
    const page = await kpay.get(`/api/v1/admin/users?${query}`);
    if (first) list.replaceChildren();
    for (const user of page.users) {
      context.people.remember(user);
      list.append(row(user));
    }
    nextCursor = page.next_cursor;
    show($("#more-users"), Boolean(nextCursor));
    show($("#user-empty"), list.children.length === 0);
  }

  async function open(userId) {
    showError(errorBox, null);
    await detail.show(userId);
    show($("#user-search"), false);
    show($("#user-detail"), true);
    window.scrollTo(0, 0);
  }

  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search(true).catch((error) => showError(errorBox, error));
  });
  $("#role-filter").addEventListener("click", (event) => {
    const chip = event.target.closest("button[data-role]");
    if (!chip) return;
    role = chip.dataset.role;
    for (const other of $("#role-filter").querySelectorAll("button")) {
      other.setAttribute("aria-pressed", String(other === chip));
    }
    search(true).catch((error) => showError(errorBox, error));
  });
  $("#more-users").addEventListener("click", (event) => whileBusy(event.currentTarget,
    () => search(false).catch((error) => showError(errorBox, error)), "加载中…"));

  return async () => {
    if (loaded) return;
    loaded = true;
    await search(true);
  };
}
