// admin.html, tabs 待处理 (GET /api/v1/admin/attention, 标记已处理 through .../resolve)
// and 操作日志 (GET /api/v1/admin/audit): actions in Chinese, people by nickname and
// avatar (looked up with GET /api/v1/admin/users?ids=, blocked people too).
// docs/pages.md "Admin console".

import { formatFen } from "../money.js";
import { $, avatar, el, formatTime, ROLE_NAMES, show, showError, whileBusy } from "../ui.js";

export const ACTION_NAMES = {
  "user.role": "修改身份",
  "user.block": "封禁用户",
  "user.unblock": "解封用户",
  "user.view": "查看用户资料",
  "user.export": "导出用户数据",
  "user.anonymise": "注销用户",
  "attention.resolve": "处理待办事项",
  "order.refund": "订单退款",
  "order.refund_late": "关单后到账退款",
  "media.takedown": "下架媒体文件",
  "payout.approve": "批准提现",
  "payout.reject": "驳回提现",
  "payout.real_name": "查看提现实名",
};

// Where a needs-attention entry comes from, as people say it (by the source's prefix).
const SOURCE_NAMES = {
  money: "支付与订单", course_drip: "课程", live_qa: "直播间", consult_billing: "咨询",
  wechat_pay: "微信支付", media: "媒体文件",
};

const PAGE = 30;

export function mountLogs(context) {
  const { kpay, errorBox, done } = context;
  const people = new Map(); // id -> admin list entry (name, avatar, role)
  let auditBefore = null;

  /** Learn the people of `ids` (user ids; "cli:<name>" is the command line). */
  async function learn(ids) {
    const wanted = [...new Set(ids)].filter((id) => id && !people.has(id)
      && /^[A-Za-z0-9_.-]{1,64}$/.test(id));
    for (let start = 0; start < wanted.length; start += 50) {
      const part = wanted.slice(start, start + 50);
      const query = new URLSearchParams({ ids: part.join(","), limit: "50" });
      const page = await kpay.get(`/api/v1/admin/users?${query}`);
      for (const id of part) people.set(id, null);
      for (const user of page.users) people.set(user.id, user);
    }
  }

  function who(id) {
    if (typeof id === "string" && id.startsWith("cli")) {
      return el("span", { class: "person" }, el("span", { class: "name" }, "命令行"));
    }
    const user = people.get(id);
    const name = user?.name || "用户";
    return el("span", { class: "person" }, avatar(user || { id, name }, 28),
      el("span", { class: "name" }, name));
  }

  function targetOf(record) {
    const [kind, id] = String(record.target).split(/:(.*)/s);
    if (kind === "user") return who(id);
    if (kind === "order") return el("span", { class: "muted small" }, "一笔订单");
    if (kind === "payout") return el("span", { class: "muted small" }, "一笔提现");
    if (kind === "attention") return el("span", { class: "muted small" }, "一条待办");
    if (kind === "media") return el("span", { class: "muted small" }, "一个媒体文件");
    return null;
  }

  function detailOf(record) {
    const details = record.details || {};
    if (record.action === "user.role" && details.after) {
      return `${ROLE_NAMES[details.before] || "用户"} → ${ROLE_NAMES[details.after] || "用户"}`;
    }
    if (Number.isSafeInteger(details.amount)) return formatFen(details.amount);
    return "";
  }

  function auditRow(record) {
    const detail = detailOf(record);
    return el("li", { "data-action": record.action },
      el("div", { class: "log-head" }, who(record.actor),
        el("strong", {}, ACTION_NAMES[record.action] || "其他操作"), targetOf(record)),
      el("p", { class: "muted small log-meta" },
        [formatTime(record.at), detail, record.reason ? `原因：${record.reason}` : ""]
          .filter(Boolean).join(" · ")));
  }

  async function loadAudit(first) {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (!first && auditBefore) query.set("before", auditBefore);
    const page = await kpay.get(`/api/v1/admin/audit?${query}`);
    await learn(page.records.flatMap((r) => [r.actor,
      String(r.target).startsWith("user:") ? String(r.target).slice(5) : null]));
    if (first) $("#audit-list").replaceChildren();
    $("#audit-list").append(...page.records.map(auditRow));
    auditBefore = page.next_before;
    show($("#more-audit"), Boolean(auditBefore));
    show($("#audit-empty"), $("#audit-list").children.length === 0);
  }

  function attentionRow(entry) {
    const source = SOURCE_NAMES[String(entry.source).split(".")[0]] || "系统任务";
    const resolve = el("button", { class: "btn plain small-btn", type: "button" }, "标记已处理");
    resolve.addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
      try {
        await kpay.post(`/api/v1/admin/attention/${encodeURIComponent(entry.id)}/resolve`,
          { note: "" });
        done("已标记为已处理");
        await loadAttention();
      } catch (error) {
        showError(errorBox, error);
      }
    }, "处理中…"));
    return el("li", {},
      el("div", { class: "log-head" }, el("strong", {}, `${source}任务处理失败`),
        el("span", { class: "badge" }, `${entry.count} 次`)),
      el("p", { class: "muted small log-meta" }, `最近一次：${formatTime(entry.last_seen_at)}`),
      // The error is for the engineer on call: kept folded, as written.
      el("details", {}, el("summary", {}, "技术详情"),
        el("pre", { class: "log-error" }, `${entry.subject}\n${entry.error}`)),
      resolve);
  }

  async function loadAttention() {
    const page = await kpay.get("/api/v1/admin/attention?status=open&limit=50");
    $("#attention-list").replaceChildren(...page.entries.map(attentionRow));
    show($("#attention-empty"), page.entries.length === 0);
  }

  $("#more-audit").addEventListener("click", (event) => whileBusy(event.currentTarget,
    () => loadAudit(false).catch((error) => showError(errorBox, error)), "加载中…"));

  return {
    attention: loadAttention,
    // Read again on each visit: the admin's own actions are the newest records.
    audit: () => loadAudit(true),
  };
}
