// admin.html, one user (GET /api/v1/admin/users/{id}): standing, money, recent orders
// (退款 through POST /api/v1/admin/orders/{id}/refund), the plugins' sections, role
// and block changes, 导出数据 and 注销（匿名化）. docs/pages.md "Admin console".

import { formatFen, parseYuan } from "../money.js";
import { $, avatar, el, formatTime, ROLE_NAMES, show, showError, whileBusy } from "../ui.js";

const ORDER_STATUS = {
  pending: "待支付", paid: "已支付", fulfilled: "已完成", closed: "已关闭", refunded: "已退款",
};

export function mountUser(context, { onClose, onChanged }) {
  const { kpay, errorBox, ask, done, me } = context;
  let user = null;

  const path = () => `/api/v1/admin/users/${encodeURIComponent(user.id)}`;

  async function load(userId) {
    const reply = await kpay.get(`/api/v1/admin/users/${encodeURIComponent(userId)}`);
    user = reply.user;
    context.people.remember(user);
    draw();
  }

  function draw() {
    $("#detail-avatar").replaceChildren(avatar(user, 56));
    $("#detail-name").textContent = user.name;
    $("#detail-role").textContent = ROLE_NAMES[user.role] || "用户";
    const online = $("#detail-online");
    online.textContent = user.online ? "在线" : "离线";
    online.dataset.state = user.online ? "online" : "offline";
    show($("#detail-blocked"), user.blocked);
    show($("#detail-anonymised"), user.anonymised);
    const meta = [user.created_at ? `注册于 ${formatTime(user.created_at)}` : null,
      user.has_openid ? "已绑定微信" : "未绑定微信", user.has_real_name ? "已实名" : null];
    $("#detail-meta").textContent = meta.filter(Boolean).join(" · ");
    for (const button of document.querySelectorAll("[data-set-role]")) {
      show(button, button.dataset.setRole !== user.role);
    }
    const self = user.id === me.id;
    show($("#block"), !user.blocked && !self);
    show($("#unblock"), user.blocked);
    show($("#anonymise"), !self);
    $("#detail-wallet").textContent = formatFen(user.wallet.balance);
    $("#detail-available").textContent = formatFen(user.wallet.available);
    $("#detail-earnings").textContent = formatFen(user.earnings);
    $("#detail-orders").replaceChildren(...user.orders.map(orderRow));
    show($("#orders-empty"), user.orders.length === 0);
    $("#detail-sections").replaceChildren(...Object.values(user.sections).map(sectionCard));
  }

  function orderRow(order) {
    const refund = order.refundable > 0
      ? el("button", { class: "btn plain small-btn", type: "button" }, "退款") : null;
    refund?.addEventListener("click", (event) => refundOrder(event.currentTarget, order));
    return el("li", {},
      el("span", { class: "desc" }, order.title,
        el("span", { class: "muted small" },
          ` ${ORDER_STATUS[order.status] || ""} · ${formatTime(order.created_at)}`
          + (order.refunded ? ` · 已退 ${formatFen(order.refunded)}` : ""))),
      el("span", { class: "order-side" }, el("strong", {}, formatFen(order.amount)), refund));
  }

  function sectionCard(section) {
    const items = Array.isArray(section?.items) ? section.items : [];
    return el("section", { class: "card" },
      el("h2", {}, String(section?.title || "其他")),
      el("ul", { class: "entries" }, items.map((item) => el("li", {},
        el("span", { class: "desc" }, String(item.title || ""),
          el("span", { class: "muted small" }, ` ${item.subtitle || ""}`
            + (item.at ? ` · ${formatTime(item.at)}` : ""))),
        Number.isSafeInteger(item.amount) ? el("strong", {}, formatFen(item.amount)) : null))));
  }

  /** Run a change; a reply with the user ({user: {role, blocked}}) is drawn as is, any
   * other reloads the detail (each load is an audited look, so not after every change). */
  async function act(button, task, message) {
    showError(errorBox, null);
    try {
      const reply = await whileBusy(button, task, "处理中…");
      if (reply?.user) {
        Object.assign(user, { role: reply.user.role, blocked: reply.user.blocked });
        draw();
      } else {
        await load(user.id);
      }
      done(message);
      onChanged();
    } catch (error) {
      showError(errorBox, error);
    }
  }

  async function refundOrder(button, order) {
    const answer = await ask({
      title: "退款", text: `「${order.title}」最多可退 ${formatFen(order.refundable)}，原路退回。`,
      ok: "确认退款", danger: true,
      fields: [{ name: "amount", label: "退款金额（元）", value: (order.refundable / 100).toFixed(2),
        inputmode: "decimal", maxlength: 12 },
      { name: "reason", label: "退款原因", value: "", maxlength: 200 }],
    });
    if (!answer) return;
    const amount = parseYuan(answer.amount);
    if (!amount || amount > order.refundable) {
      showError(errorBox, { code: "invalid_field", details: { field: "amount" } });
      return;
    }
    await act(button, () => kpay.post(`/api/v1/admin/orders/${encodeURIComponent(order.id)}/refund`,
      { amount, reason: answer.reason || "运营退款" }), `已提交退款 ${formatFen(amount)}`);
  }

  for (const button of document.querySelectorAll("[data-set-role]")) {
    button.addEventListener("click", async () => {
      const role = button.dataset.setRole;
      const answer = await ask({ title: button.textContent,
        text: `把「${user.name}」设为${ROLE_NAMES[role]}？对方需要重新登录。`, ok: "确定" });
      if (answer) await act(button, () => kpay.post(`${path()}/role`, { role }),
        `已设为${ROLE_NAMES[role]}`);
    });
  }

  $("#block").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const answer = await ask({ title: "封禁用户",
      text: `封禁后「${user.name}」会立即退出登录，无法再使用平台。`, ok: "确认封禁", danger: true,
      fields: [{ name: "reason", label: "封禁原因（对方不可见）", value: "", maxlength: 500 }] });
    if (answer) await act(button, () => kpay.post(`${path()}/block`, { reason: answer.reason }),
      "已封禁");
  });

  $("#unblock").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const answer = await ask({ title: "解封用户", text: `解封「${user.name}」？对方重新登录后即可使用。` });
    if (answer) await act(button, () => kpay.post(`${path()}/unblock`, { reason: "" }), "已解封");
  });

  $("#export").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
    try {
      const data = await kpay.get(`${path()}/export`);
      const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
      const link = el("a", { href: URL.createObjectURL(blob), download: `kpay-user-${user.id}.json` });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
      done("已导出数据文件");
    } catch (error) {
      showError(errorBox, error);
    }
  }, "导出中…"));

  $("#anonymise").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const answer = await ask({ title: "注销（匿名化）",
      text: `将删除「${user.name}」的昵称、头像、微信与实名信息，提问和聊天改为“（已删除）”，并退出所有登录；订单与账目保留。此操作不可撤销。`,
      ok: "确认注销", danger: true,
      fields: [{ name: "confirm", label: `请输入用户 ID「${user.id}」确认`, value: "", maxlength: 64 }] });
    if (!answer) return;
    if (answer.confirm !== user.id) {
      showError(errorBox, { code: "confirm_mismatch" });
      return;
    }
    await act(button, () => kpay.post(`${path()}/anonymise`, { confirm: answer.confirm }),
      "已注销该用户");
  });

  $("#back-to-list").addEventListener("click", () => {
    done("");
    onClose();
  });

  return { show: load };
}
