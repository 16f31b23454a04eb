// The console's 学员 section (console.html #panel-audience), and the same panel for operators
// (admin.html mounts it with scope "platform"): my students with my tags (add and remove
// chips), a segment builder (tags and rules, 全部满足 / 满足任一), each segment's member
// count and CSV export, and a message to a segment with a preview and the daily cap.
// Routes in docs/api.md "Audience"; what it is for in docs/audience.md.

import { errorFromEnvelope, formatFen, parseYuan } from "../kpay.js";
import { $, avatar, el, errorText, show, whileBusy } from "../ui.js";

const TAG_MAX = 12;

// Chinese for this section's refusals (the rest: ui.js errorText).
function audienceErrorText(error) {
  switch (error?.code) {
    case "not_your_student": return "只能给自己的学员加标签";
    case "invalid_tag": return `标签须为 1–${TAG_MAX} 个字`;
    case "invalid_rule": return "条件的参数不正确";
    case "daily_cap": return "今天的消息条数已用完，明天再发";
    case "too_many_recipients": return "分组人数超过单条消息的上限，请缩小分组";
    case "invalid_link": return "链接须为本站页面地址";
    case "too_many_open":
      if (error.details?.what === "tags") return "标签最多 50 个，请先删除不用的标签";
      if (error.details?.what === "segments") return "分组最多 50 个，请先删除不用的分组";
      return errorText(error);
    default: return errorText(error);
  }
}

function say(region, error) {
  region.textContent = audienceErrorText(error);
  show(region, true);
}

// A condition in words: "标签：VIP", "近期消费满额：7 天内满 ¥300.00".
function conditionText(condition, rules) {
  if (condition.tag) return `标签：${condition.tag}`;
  const rule = rules.find((r) => r.name === condition.rule);
  const p = condition.params || {};
  const label = rule ? rule.label : "条件";
  if (condition.rule === "spent_at_least") return `${label}：${p.days} 天内满 ${formatFen(p.amount)}`;
  if (condition.rule === "inactive_for") return `${label}：${p.days} 天`;
  // A named thing (a course, a room) by its name from the rule's choices, never its id.
  const values = Object.entries(p).map(([name, value]) =>
    (rule?.choices?.[name] || []).find((c) => c.value === value)?.label ?? value).join("、");
  return values ? `${label}：${values}` : label;
}

function layout() {
  return el("div", {},
    el("section", { class: "card", id: "au-students-card", "aria-labelledby": "au-students-title" },
      el("h2", { id: "au-students-title" }, "我的学员"),
      el("p", { class: "hint", id: "au-students-count" }),
      el("div", { class: "alert", id: "au-students-error", role: "alert", hidden: true }),
      el("ul", { class: "au-people", id: "au-students" }),
      el("p", { class: "muted small", id: "au-students-empty", hidden: true }, "还没有学员：有人购买你的课程、门票或咨询后会出现在这里"),
      el("button", { class: "btn plain", type: "button", id: "au-students-more", hidden: true }, "加载更多")),
    el("section", { class: "card", id: "au-builder-card", "aria-labelledby": "au-builder-title" },
      el("h2", { id: "au-builder-title" }, "新建分组"),
      el("form", { id: "au-builder", novalidate: true },
        el("div", { class: "field" },
          el("label", { for: "au-seg-name" }, "分组名称"),
          el("input", { id: "au-seg-name", type: "text", maxlength: 20, placeholder: "例如：高价值学员" })),
        el("div", { class: "field" },
          el("label", { for: "au-seg-match" }, "匹配方式"),
          el("select", { id: "au-seg-match" },
            el("option", { value: "all" }, "同时满足所有条件"),
            el("option", { value: "any" }, "满足任一条件"))),
        el("fieldset", { class: "au-conditions" },
          el("legend", {}, "按标签"),
          el("div", { class: "au-choices", id: "au-tag-choices" }),
          el("p", { class: "hint", id: "au-no-tags" }, "先在上方给学员加标签")),
        el("fieldset", { class: "au-conditions" },
          el("legend", {}, "按行为"),
          el("div", { class: "au-choices", id: "au-rule-choices" })),
        el("div", { class: "alert", id: "au-builder-error", role: "alert", hidden: true }),
        el("button", { class: "btn", type: "submit", id: "au-seg-save" }, "保存分组"))),
    el("section", { class: "card", id: "au-segments-card", "aria-labelledby": "au-segments-title" },
      el("h2", { id: "au-segments-title" }, "我的分组"),
      el("div", { class: "alert", id: "au-segments-error", role: "alert", hidden: true }),
      el("ul", { class: "au-segments", id: "au-segments" }),
      el("p", { class: "muted small", id: "au-segments-empty" }, "还没有分组")),
    el("section", { class: "card", id: "au-message-card", "aria-labelledby": "au-message-title", hidden: true },
      el("h2", { id: "au-message-title" }, "发消息"),
      el("p", { class: "hint", id: "au-message-to" }),
      el("form", { id: "au-message", novalidate: true },
        el("div", { class: "field" },
          el("label", { for: "au-msg-title" }, "标题"),
          el("input", { id: "au-msg-title", type: "text", maxlength: 30, placeholder: "例如：周六晚八点直播预告" })),
        el("div", { class: "field" },
          el("label", { for: "au-msg-body" }, "内容"),
          el("textarea", { id: "au-msg-body", rows: 3, maxlength: 300 })),
        el("div", { class: "au-preview", "aria-label": "预览" },
          el("p", { class: "muted small" }, "学员在「消息」里看到："),
          el("strong", { id: "au-preview-title" }, "（标题）"),
          el("p", { id: "au-preview-body" })),
        el("p", { class: "hint", id: "au-cap" }),
        el("div", { class: "alert", id: "au-message-error", role: "alert", hidden: true }),
        el("p", { class: "notice small", id: "au-message-done", role: "status", hidden: true }),
        el("button", { class: "btn", type: "submit", id: "au-msg-send" }, "发送"))));
}

/** Fill the audience panel. context: {kpay, me} (console.js); operators' pages pass
 * `scope: "platform"` (the server decides the scope from the role; it only words the page). */
export async function mount(panel, { kpay, scope = "mine" }) {
  const q = (selector) => $(selector, panel);
  panel.replaceChildren(layout());
  if (scope === "platform") q("#au-students-title").textContent = "购买过的用户";
  let rules = [];
  let tags = [];
  let cursor = null;
  let chosen = null; // the segment a message goes to

  async function download(path, filename) {
    const response = await fetch(kpay.base + path, { headers: { Authorization: `Bearer ${kpay.token}` } });
    if (!response.ok) throw errorFromEnvelope(response.status, await response.json().catch(() => null));
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: filename });
    document.body.append(link);
    link.click();
    link.remove();
  }

  function personRow(person) {
    const chips = el("span", { class: "au-tags" }, ...person.tags.map((tag) =>
      el("button", { type: "button", class: "au-chip", "data-tag": tag, "aria-label": `删除标签 ${tag}` }, tag, " ×")));
    const input = el("input", { type: "text", maxlength: TAG_MAX, placeholder: "新标签", "aria-label": `给 ${person.name} 加标签`, list: "au-tag-list" });
    const add = el("button", { type: "submit", class: "btn plain" }, "加标签");
    const form = el("form", { class: "row au-add", novalidate: true }, input, add);
    const row = el("li", { class: "au-person", "data-user": person.id },
      el("span", { class: "person" }, avatar(person, 36), el("span", { class: "name" }, person.name)),
      chips, form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const tag = input.value.trim();
      if (!tag) return;
      whileBusy(add, async () => {
        try {
          await kpay.put(`/api/v1/tags/${encodeURIComponent(person.id)}/${encodeURIComponent(tag)}`);
          row.replaceWith(personRow({ ...person, tags: [...new Set([...person.tags, tag])].sort() }));
          await loadTags();
        } catch (error) {
          say(q("#au-students-error"), error);
        }
      });
    });
    chips.addEventListener("click", async (event) => {
      const chip = event.target.closest("[data-tag]");
      if (!chip) return;
      try {
        await kpay.request("DELETE", `/api/v1/tags/${encodeURIComponent(person.id)}/${encodeURIComponent(chip.dataset.tag)}`);
        row.replaceWith(personRow({ ...person, tags: person.tags.filter((t) => t !== chip.dataset.tag) }));
        await loadTags();
      } catch (error) {
        say(q("#au-students-error"), error);
      }
    });
    return row;
  }

  async function loadStudents(more = false) {
    const page = await kpay.get(`/api/v1/audience/students?limit=20${more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (!more) q("#au-students").replaceChildren();
    q("#au-students").append(...page.people.map(personRow));
    cursor = page.next_cursor;
    q("#au-students-count").textContent = `共 ${page.count} 人`;
    show(q("#au-students-empty"), page.count === 0);
    show(q("#au-students-more"), Boolean(cursor));
  }

  async function loadTags() {
    ({ tags } = await kpay.get("/api/v1/tags"));
    q("#au-tag-choices").replaceChildren(...tags.map(({ tag, count }) =>
      el("label", { class: "au-choice" }, el("input", { type: "checkbox", value: tag, "data-kind": "tag" }), ` ${tag}（${count}）`)));
    show(q("#au-no-tags"), tags.length === 0);
    const list = el("datalist", { id: "au-tag-list" }, ...tags.map(({ tag }) => el("option", { value: tag })));
    q("#au-tag-list")?.remove();
    panel.append(list);
  }

  function ruleChoice(rule) {
    const fields = Object.entries(rule.params.properties || {}).map(([name, schema]) => {
      const label = name === "amount" ? "金额（元）" : name === "days" ? "天数" : (schema.title || name);
      const numeric = schema.type === "integer";
      const choices = rule.choices?.[name];
      if (choices) {
        return el("label", { class: "au-param" }, label,
          el("select", { "data-param": name, "data-type": "string" },
            ...choices.map((c) => el("option", { value: c.value }, c.label))));
      }
      return el("label", { class: "au-param" }, label,
        el("input", { type: "text", inputmode: numeric ? "decimal" : "text", "data-param": name, "data-type": name === "amount" ? "yuan" : schema.type, value: name === "days" ? "30" : "" }));
    });
    return el("div", { class: "au-rule" },
      el("label", { class: "au-choice" }, el("input", { type: "checkbox", value: rule.name, "data-kind": "rule" }), ` ${rule.label}`),
      fields.length ? el("div", { class: "au-params" }, ...fields) : "");
  }

  function readConditions() {
    const conditions = [];
    for (const box of panel.querySelectorAll("#au-builder input[type=checkbox]:checked")) {
      if (box.dataset.kind === "tag") {
        conditions.push({ tag: box.value });
        continue;
      }
      const params = {};
      for (const input of box.closest(".au-rule").querySelectorAll("[data-param]")) {
        const raw = input.value.trim();
        if (input.dataset.type === "yuan") params[input.dataset.param] = parseYuan(raw);
        else if (input.dataset.type === "integer") params[input.dataset.param] = Number.parseInt(raw, 10);
        else params[input.dataset.param] = raw;
      }
      conditions.push({ rule: box.value, params });
    }
    return conditions;
  }

  function segmentRow(segment) {
    const count = el("span", { class: "au-count" }, "…");
    const row = el("li", { class: "au-segment", "data-segment": segment.id },
      el("div", {}, el("strong", {}, segment.name), " ", count),
      el("p", { class: "hint" }, (segment.match === "all" ? "同时满足：" : "满足任一：")
        + segment.conditions.map((c) => conditionText(c, rules)).join("；")),
      el("div", { class: "row" },
        el("button", { type: "button", class: "btn plain", "data-do": "message" }, "发消息"),
        el("button", { type: "button", class: "btn plain", "data-do": "csv" }, "导出 CSV"),
        el("button", { type: "button", class: "btn plain", "data-do": "delete" }, "删除")));
    kpay.get(`/api/v1/segments/${segment.id}`).then((full) => {
      count.textContent = `${full.count} 人`;
      segment.count = full.count;
    }).catch((error) => say(q("#au-segments-error"), error));
    row.addEventListener("click", async (event) => {
      const action = event.target.closest("[data-do]")?.dataset.do;
      try {
        if (action === "csv") await download(`/api/v1/segments/${segment.id}/members.csv`, `${segment.name}.csv`);
        if (action === "delete") {
          await kpay.request("DELETE", `/api/v1/segments/${segment.id}`);
          await loadSegments();
        }
        if (action === "message") await openMessage(segment);
      } catch (error) {
        say(q("#au-segments-error"), error);
      }
    });
    return row;
  }

  async function loadSegments() {
    const { segments } = await kpay.get("/api/v1/segments");
    q("#au-segments").replaceChildren(...segments.map(segmentRow));
    show(q("#au-segments-empty"), segments.length === 0);
  }

  async function openMessage(segment) {
    chosen = segment;
    chosen.key = crypto.randomUUID(); // a double tap sends once
    const { cap } = await kpay.get(`/api/v1/segments/${segment.id}/messages`);
    q("#au-message-to").textContent = `发给分组「${segment.name}」${segment.count ?? ""}${segment.count === undefined ? "" : " 人"}`;
    q("#au-cap").textContent = cap.per_day === null ? "" :
      `今天已发 ${cap.sent_today} / ${cap.per_day} 条，每条最多发给 ${cap.max_recipients} 人`;
    show(q("#au-message-done"), false);
    show(q("#au-message-card"), true);
    q("#au-message-card").scrollIntoView({ block: "start" });
  }

  const preview = () => {
    q("#au-preview-title").textContent = q("#au-msg-title").value.trim() || "（标题）";
    q("#au-preview-body").textContent = q("#au-msg-body").value.trim();
  };
  q("#au-msg-title").addEventListener("input", preview);
  q("#au-msg-body").addEventListener("input", preview);

  q("#au-message").addEventListener("submit", (event) => {
    event.preventDefault();
    show(q("#au-message-error"), false);
    whileBusy(q("#au-msg-send"), async () => {
      const response = await fetch(`${kpay.base}/api/v1/segments/${chosen.id}/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${kpay.token}`, "Content-Type": "application/json", "Idempotency-Key": chosen.key },
        body: JSON.stringify({ title: q("#au-msg-title").value.trim(), body: q("#au-msg-body").value.trim() }),
      });
      const answer = await response.json().catch(() => null);
      if (!response.ok) {
        say(q("#au-message-error"), errorFromEnvelope(response.status, answer));
        return;
      }
      let message = answer;
      for (let i = 0; i < 100 && message.status !== "done"; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        message = await kpay.get(`/api/v1/audience/messages/${message.id}`);
      }
      const failed = message.failed ? `，${message.failed} 人未送达` : "";
      q("#au-message-done").textContent = `已发送给 ${message.sent} 人${failed}`;
      show(q("#au-message-done"), true);
      chosen.key = crypto.randomUUID();
    }, "发送中…");
  });

  q("#au-builder").addEventListener("submit", (event) => {
    event.preventDefault();
    show(q("#au-builder-error"), false);
    const name = q("#au-seg-name").value.trim();
    const conditions = readConditions();
    if (!name || !conditions.length) {
      q("#au-builder-error").textContent = !name ? "请填写分组名称" : "请至少选择一个条件";
      show(q("#au-builder-error"), true);
      return;
    }
    whileBusy(q("#au-seg-save"), async () => {
      try {
        await kpay.post("/api/v1/segments", { name, match: q("#au-seg-match").value, conditions });
        q("#au-seg-name").value = "";
        for (const box of panel.querySelectorAll("#au-builder input[type=checkbox]")) box.checked = false;
        await loadSegments();
      } catch (error) {
        say(q("#au-builder-error"), error);
      }
    });
  });
  q("#au-students-more").addEventListener("click", () => loadStudents(true).catch((e) => say(q("#au-students-error"), e)));

  ({ rules } = await kpay.get("/api/v1/audience/rules"));
  // A rule that names things the owner has none of (no course yet) cannot be used.
  const usable = rules.filter((r) => !Object.values(r.choices || {}).some((list) => !list.length));
  q("#au-rule-choices").replaceChildren(...usable.map(ruleChoice));
  await Promise.all([loadStudents(), loadTags(), loadSegments()]);
}

/** The same panel for another page (admin.html): `mountAudience(panel, {kpay, me, scope})`. */
export const mountAudience = mount;
