// The console's 课程 section (console.html #panel-courses): create a course with lessons and
// their release rules (at once, n days after enrolling at HH:MM, on a date, after the
// previous lesson), my courses (drafts included) with 发布, per-course stats (enrollments,
// completion per lesson) and gifting an enrollment to a student by id. 编辑 opens the course
// editor (console-course-editor.js): cover, lessons added later, reordered, withdrawn, media.

import { formatFen, parseYuan } from "../money.js";
import { $, el, formatTime, show, showError, whileBusy } from "../ui.js";
import { categoryField, categoryOf } from "../storefront.js";

export const RELEASE_KINDS = {
  now: "购买后立即开放",
  after_days: "购买后第 N 天开放",
  at_date: "指定日期开放",
  after_previous: "完成上一课后开放",
};

/** A release rule in words, for lists. */
export function releaseText(rule) {
  if (!rule) return RELEASE_KINDS.now;
  if (rule.after_previous) return RELEASE_KINDS.after_previous;
  if (rule.at_date) return `${formatTime(rule.at_date)} 开放`;
  if (rule.after_days) return `购买后第 ${rule.after_days} 天${rule.at ? ` ${rule.at}` : ""} 开放`;
  return RELEASE_KINDS.now;
}

const STYLESHEET = "/static/css/course.css";

/** console.html does not link course.css itself; the 课程 section brings it along. */
export function ensureStylesheet() {
  if (document.querySelector(`link[href="${STYLESHEET}"]`)) return;
  document.head.append(el("link", { rel: "stylesheet", href: STYLESHEET }));
}

export function field(id, label, input, hint = null) {
  if (hint) input.setAttribute("aria-describedby", `${id}-hint`);
  return el("div", { class: "field" }, el("label", { for: id }, label), input,
    hint ? el("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

/** "2030-01-02T20:00" in this browser's zone, for a datetime-local input. */
function localInputValue(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  const two = (n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())}T${two(at.getHours())}:${two(at.getMinutes())}`;
}

/**
 * The release rule inputs of one lesson (ids `${id}-release`, `-days`, `-at`, `-date`):
 * {node, kind (the select), set(rule), read(label, first, fail) -> rule or null}.
 * Used by the create form and the course editor (console-course-editor.js).
 */
export function releaseInputs(id) {
  const kind = el("select", { id: `${id}-release` },
    ...Object.entries(RELEASE_KINDS).map(([value, text]) => el("option", { value }, text)));
  const daysInput = el("input", { id: `${id}-days`, type: "number", inputmode: "numeric",
    min: "1", step: "1", value: "1" });
  const atInput = el("input", { id: `${id}-at`, type: "time", value: "08:00" });
  const dateInput = el("input", { id: `${id}-date`, type: "datetime-local" });
  const dayFields = el("div", { class: "release-fields" },
    field(`${id}-days`, "第几天", daysInput), field(`${id}-at`, "几点（可选）", atInput, "留空：按购买时刻"));
  const date = field(`${id}-date`, "开放时间", dateInput);
  const sync = () => {
    show(dayFields, kind.value === "after_days");
    show(date, kind.value === "at_date");
  };
  kind.addEventListener("change", sync);
  sync();
  return {
    node: el("div", {}, field(`${id}-release`, "开放规则", kind), dayFields, date),
    kind,
    set(rule) {
      kind.value = rule?.after_previous ? "after_previous" : rule?.at_date ? "at_date"
        : rule?.after_days ? "after_days" : "now";
      if (rule?.after_days) {
        daysInput.value = String(rule.after_days);
        atInput.value = rule.at || "";
      }
      if (rule?.at_date) dateInput.value = localInputValue(rule.at_date);
      sync();
    },
    /** The rule as the API takes it; `label` names the lesson in messages ("第 2 课"). */
    read(label, first, fail) {
      if (kind.value === "after_days") {
        const days = daysInput.value.trim();
        if (!/^\d{1,4}$/.test(days)) return fail(`${label}：天数须为整数`, daysInput);
        const at = atInput.value; // empty: the time of day the student bought the course
        return at ? { after_days: Number(days), at } : { after_days: Number(days) };
      }
      if (kind.value === "at_date") {
        const at = new Date(dateInput.value); // datetime-local: the author's own time zone
        if (Number.isNaN(at.getTime())) return fail(`${label}：请选择开放时间`, dateInput);
        return { at_date: at.toISOString() };
      }
      if (kind.value === "after_previous") {
        if (first) return fail(`${label}不能设为完成上一课后开放`, kind);
        return { after_previous: true };
      }
      return { after_days: 0 };
    },
  };
}

function layout() {
  return [
    el("section", { class: "card", id: "my-courses", "aria-labelledby": "my-courses-title" },
      el("h2", { id: "my-courses-title" }, "我的课程"),
      el("div", { class: "alert", id: "courses-error", role: "alert", hidden: true }),
      el("ul", { class: "course-list", id: "course-list" }),
      el("p", { class: "muted small", id: "courses-empty", hidden: true }, "还没有课程，先创建一个吧。")),
    el("details", { class: "card", id: "course-create" },
      el("summary", { id: "course-create-title" }, "创建课程"),
      el("form", { id: "course-form", novalidate: true, "aria-labelledby": "course-create-title" },
        field("course-title", "课程名称", el("input", { id: "course-title", type: "text", maxlength: "200" })),
        field("course-description", "简介（可选，支持 Markdown）",
          el("textarea", { id: "course-description", rows: "3", maxlength: "20000" })),
        field("course-price", "课程价格（元）", el("input", { id: "course-price", type: "text",
          inputmode: "decimal", autocomplete: "off", value: "0" }), "0 为免费课程"),
        el("h3", {}, "课时"),
        el("div", { id: "lesson-editors" }),
        el("button", { class: "btn plain", type: "button", id: "add-lesson" }, "添加课时"),
        el("div", { class: "alert", id: "course-form-error", role: "alert", hidden: true }),
        el("button", { class: "btn", type: "submit", id: "course-submit" }, "创建课程（草稿）"))),
  ];
}

/** Fill the courses panel. context: {kpay, refreshEarnings} (see console.js). */
export async function mount(panel, { kpay, refreshEarnings = () => {} }) {
  ensureStylesheet();
  panel.replaceChildren(...layout());
  const q = (selector) => $(selector, panel);
  categoryField(kpay, "course-category").then(
    (field) => field && q("#course-price").closest(".field").after(field));
  let editors = 0; // numbering of lesson editors (ids stay unique after removals)
  const releases = new WeakMap(); // lesson editor box -> its releaseInputs

  // -- the create form ----------------------------------------------------------------------

  function addLessonEditor() {
    editors += 1;
    const n = editors;
    const id = (name) => `lesson-${n}-${name}`;
    const release = releaseInputs(`lesson-${n}`);
    const remove = el("button", { class: "btn plain", type: "button" }, "删除此课时");
    const box = el("fieldset", { class: "lesson-editor", "data-lesson": String(n) },
      el("legend", {}, "课时"),
      field(id("title"), "课时标题", el("input", { id: id("title"), type: "text", maxlength: "200" })),
      field(id("body"), "正文（Markdown）", el("textarea", { id: id("body"), rows: "3" }),
        "音频、视频、图片和预览：创建后在“编辑”里添加"),
      release.node, remove);
    releases.set(box, release);
    remove.addEventListener("click", () => {
      box.remove();
      renumber();
    });
    q("#lesson-editors").append(box);
    renumber();
  }

  function renumber() {
    const boxes = [...q("#lesson-editors").children];
    boxes.forEach((box, i) => {
      box.querySelector("legend").textContent = `第 ${i + 1} 课`;
      // The first lesson has nothing before it to complete.
      box.querySelector('option[value="after_previous"]').disabled = i === 0;
    });
  }

  function readLesson(box, i, fail) {
    const get = (name) => box.querySelector(`#lesson-${box.dataset.lesson}-${name}`);
    const title = get("title").value.trim();
    if (!title) return fail(`请填写第 ${i + 1} 课的标题`, get("title"));
    const body = get("body").value;
    if (!body.trim()) return fail(`请填写第 ${i + 1} 课的正文`, get("body"));
    const release = releases.get(box).read(`第 ${i + 1} 课`, i === 0, fail);
    return release ? { title, body, release } : null;
  }

  q("#add-lesson").addEventListener("click", addLessonEditor);
  addLessonEditor();

  q("#course-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const region = q("#course-form-error");
    showError(region, null);
    let failed = false;
    const fail = (text, input) => {
      region.textContent = text;
      show(region, true);
      input.focus();
      failed = true;
      return null;
    };
    const title = q("#course-title").value.trim();
    if (!title) return fail("请填写课程名称", q("#course-title"));
    const price = parseYuan(q("#course-price").value || "0");
    if (price === null) return fail("价格不正确（最多两位小数）", q("#course-price"));
    const lessons = [];
    for (const [i, box] of [...q("#lesson-editors").children].entries()) {
      const lesson = readLesson(box, i, fail);
      if (failed) return null;
      lessons.push(lesson);
    }
    if (!lessons.length) return fail("至少添加一个课时", q("#add-lesson"));
    await whileBusy(q("#course-submit"), async () => {
      try {
        await kpay.post("/api/v1/courses", {
          title, price, description: q("#course-description").value, lessons,
          ...categoryOf(q("#course-category")),
        });
        event.target.reset();
        q("#lesson-editors").replaceChildren();
        addLessonEditor();
        q("#course-create").open = false;
        await loadCourses();
      } catch (error) {
        showError(region, error);
      }
    }, "创建中…");
    return null;
  });

  // -- my courses ------------------------------------------------------------------------------

  async function loadCourses() {
    const { courses } = await kpay.get("/api/v1/courses?mine=1&limit=100");
    q("#course-list").replaceChildren(...courses.map(courseItem));
    show(q("#courses-empty"), courses.length === 0);
    if (!courses.length) q("#course-create").open = true;
  }

  function courseItem(course) {
    const base = `/api/v1/courses/${encodeURIComponent(course.id)}`;
    const error = el("div", { class: "alert", role: "alert", hidden: true });
    const stats = el("div", { class: "course-stats", hidden: true });
    const publish = el("button", { class: "btn", type: "button", "aria-label": `发布：${course.title}` }, "发布");
    const statsButton = el("button", { class: "btn secondary", type: "button",
      "aria-label": `统计：${course.title}`, "aria-expanded": "false" }, "统计");
    const giftInput = el("input", { id: `gift-${course.id}`, type: "text", autocomplete: "off",
      placeholder: "学生账号", maxlength: "64" });
    const giftButton = el("button", { class: "btn secondary", type: "submit" }, "赠送");
    const giftDone = el("p", { class: "notice small", role: "status", hidden: true });
    const gift = el("form", { class: "inline-form", novalidate: true },
      el("label", { for: `gift-${course.id}` }, "赠送课程给学生"),
      el("div", { class: "row" }, giftInput, giftButton));
    show(publish, course.status !== "published");
    const edit = el("button", { class: "btn secondary", type: "button", "aria-label": `编辑：${course.title}` }, "编辑");
    edit.addEventListener("click", () => whileBusy(edit, async () => {
      showError(error, null);
      try {
        const { openEditor } = await import("./console-course-editor.js");
        await openEditor(panel, { kpay, courseId: course.id,
          hide: [q("#my-courses"), q("#course-create")],
          onClose: () => loadCourses().catch((e) => showError(q("#courses-error"), e)) });
      } catch (e) {
        showError(error, e);
      }
    }));

    publish.addEventListener("click", () => whileBusy(publish, async () => {
      showError(error, null);
      try {
        await kpay.post(`${base}/publish`);
        await loadCourses();
      } catch (e) {
        showError(error, e);
      }
    }, "发布中…"));
    statsButton.addEventListener("click", () => whileBusy(statsButton, async () => {
      const open = statsButton.getAttribute("aria-expanded") === "true";
      statsButton.setAttribute("aria-expanded", String(!open));
      show(stats, !open);
      if (!open) await loadStats(base, stats, error);
    }));
    gift.addEventListener("submit", (event) => {
      event.preventDefault();
      const userId = giftInput.value.trim();
      showError(error, null);
      show(giftDone, false);
      if (!userId) {
        giftInput.focus();
        return;
      }
      whileBusy(giftButton, async () => {
        try {
          await kpay.post(`${base}/enrollments`, { user_id: userId });
          giftInput.value = "";
          giftDone.textContent = `已赠送给 ${userId}`;
          show(giftDone, true);
          if (!stats.hidden) await loadStats(base, stats, error);
        } catch (e) {
          showError(error, e);
          if (e.code === "already_enrolled") error.textContent = `${userId} 已拥有此课程`;
        }
      });
    });

    const link = `/static/course.html?id=${encodeURIComponent(course.id)}`;
    return el("li", { "data-id": course.id },
      el("p", { class: "history-head" }, el("strong", {}, course.title),
        el("span", { class: "price" }, course.price ? formatFen(course.price) : "免费")),
      el("p", { class: "muted small" },
        `${course.status === "published" ? "已发布" : "草稿"} · ${course.lessons.length} 课时 · ${formatTime(course.created_at)}`),
      course.cover ? el("img", { class: "course-thumb", src: course.cover, alt: "" }) : null,
      el("ol", { class: "small lesson-rules" }, ...course.lessons.map((lesson) =>
        el("li", {}, `${lesson.title}：${releaseText(lesson.release)}`))),
      // The students' page by name, not its raw address (which carries the course id).
      el("p", { class: "small" }, el("a", { href: link, class: "student-link" }, "查看学生看到的课程页")),
      error,
      el("div", { class: "course-actions" }, edit, publish, statsButton),
      stats, gift, giftDone);
  }

  async function loadStats(base, box, error) {
    try {
      const { stats } = await kpay.get(`${base}/stats`);
      refreshEarnings(); // sales book to the earnings account; no event tells the console
      const sources = { order: "购买", gift: "赠送" };
      box.replaceChildren(
        el("dl", { class: "stats" },
          el("div", {}, el("dt", {}, "学员"), el("dd", { class: "stat-enrollments" }, String(stats.enrollments))),
          ...Object.entries(stats.by_source).map(([source, n]) =>
            el("div", {}, el("dt", {}, sources[source] || source), el("dd", {}, String(n))))),
        el("ul", { class: "entries" }, ...stats.lessons.map((lesson) => el("li", {},
          el("span", {}, lesson.title),
          el("span", {}, `完成 ${lesson.completed} 人（${lesson.completion_percent}%）`)))));
    } catch (e) {
      showError(error, e);
    }
  }

  await loadCourses();
}
