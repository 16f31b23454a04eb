// The console's course editor (opened with 编辑 from 我的课程, console-courses.js): the
// course's title, description, price and cover (uploaded, purpose "cover"), publish and
// withdraw; its lessons in order with 上移/下移, 编辑, 下架/上架 and deleting a withdrawn one;
// the lesson form is console-lesson-form.js. API: docs/course_drip.md "Editing a course".

import { uploadFile } from "../media.js";
import { formatFen, parseYuan } from "../money.js";
import { $, el, show, showError, whileBusy } from "../ui.js";
import { ensureStylesheet, field, releaseText } from "./console-courses.js";
import { fraction, lessonForm, mediaText } from "./console-lesson-form.js";

const yuanText = (fen) => (fen / 100).toFixed(2).replace(/\.00$/, "");

/** A button that wants a second tap before it acts ("确认删除"). */
function confirming(button, text, action) {
  let armed = false;
  const label = button.textContent;
  button.addEventListener("click", () => {
    if (!armed) {
      armed = true;
      button.textContent = text;
      setTimeout(() => { armed = false; button.textContent = label; }, 4000);
      return;
    }
    armed = false;
    action();
  });
}

function layout() {
  const view = el("div", { id: "course-editor" },
    el("section", { class: "card", "aria-labelledby": "editor-title" },
      el("div", { class: "editor-head" },
        el("button", { class: "btn plain back-button", type: "button", id: "editor-back" }, "‹ 我的课程"),
        el("h2", { id: "editor-title" }, "编辑课程")),
      el("p", { class: "muted small", id: "editor-status" }),
      el("div", { class: "alert", id: "editor-error", role: "alert", hidden: true }),
      el("form", { id: "course-edit-form", novalidate: true, "aria-label": "课程信息" },
        field("edit-title", "课程名称", el("input", { id: "edit-title", type: "text", maxlength: "200" })),
        field("edit-description", "简介（支持 Markdown）",
          el("textarea", { id: "edit-description", rows: "3", maxlength: "20000" })),
        field("edit-price", "课程价格（元）", el("input", { id: "edit-price", type: "text",
          inputmode: "decimal", autocomplete: "off" }), "0 为免费课程"),
        el("div", { class: "field" },
          el("span", { class: "label", id: "edit-cover-label" }, "封面"),
          el("div", { class: "cover-row" },
            el("img", { id: "edit-cover-img", alt: "课程封面", hidden: true }),
            el("label", { class: "btn secondary file-button", for: "edit-cover-file" }, "上传封面",
              el("input", { id: "edit-cover-file", type: "file", accept: "image/*" }))),
          el("progress", { class: "upload-progress", id: "edit-cover-progress", max: "1", value: "0",
            "aria-label": "封面上传进度", hidden: true })),
        el("p", { class: "notice small", id: "edit-saved", role: "status", hidden: true }),
        el("button", { class: "btn", type: "submit", id: "edit-save" }, "保存课程信息")),
      el("div", { class: "course-actions" },
        el("button", { class: "btn secondary", type: "button", id: "edit-publish" }, "发布课程"),
        el("button", { class: "btn plain", type: "button", id: "edit-unpublish" }, "下架课程"))),
    el("section", { class: "card", "aria-labelledby": "editor-lessons-title" },
      el("h2", { id: "editor-lessons-title" }, "课时"),
      el("p", { class: "muted small" }, "下架的课时学员看不到；已下架的课时可以删除。"),
      el("div", { class: "alert", id: "editor-lessons-error", role: "alert", hidden: true }),
      el("ol", { class: "lessons editor-lessons", id: "editor-lessons" }),
      el("button", { class: "btn secondary", type: "button", id: "editor-add-lesson" }, "添加课时")));
  return view;
}

/**
 * Open the editor of course `courseId` in `panel` (the 课程 tabpanel), hiding `hide`
 * (the list and the create form) until 我的课程 is tapped; then `onClose()`.
 */
export async function openEditor(panel, { kpay, courseId, hide = [], onClose = () => {} }) {
  ensureStylesheet();
  const view = layout();
  const q = (selector) => $(selector, view);
  const base = `/api/v1/courses/${encodeURIComponent(courseId)}`;
  let course = null;

  const form = lessonForm({ kpay, base, course: () => course, onSaved: () => load() });
  view.append(form.element);
  for (const node of hide) show(node, false);
  panel.append(view);

  function close() {
    view.remove();
    for (const node of hide) show(node, true);
    onClose();
  }
  q("#editor-back").addEventListener("click", close);

  // -- the course -------------------------------------------------------------------------

  function renderCourse() {
    q("#editor-title").textContent = course.title;
    q("#editor-status").textContent = `${course.status === "published" ? "已发布" : "草稿"} · ${course.lessons.length} 课时 · ${course.price ? formatFen(course.price) : "免费"}`;
    show(q("#edit-publish"), course.status !== "published");
    show(q("#edit-unpublish"), course.status === "published");
    q("#edit-cover-img").src = course.cover || "";
    show(q("#edit-cover-img"), Boolean(course.cover));
    renderLessons();
  }

  function fillCourseForm() {
    q("#edit-title").value = course.title;
    q("#edit-description").value = course.description || "";
    q("#edit-price").value = yuanText(course.price);
  }

  async function load() {
    const reply = await kpay.get(base);
    course = reply.course;
    fillCourseForm();
    renderCourse();
  }

  async function patchCourse(body) {
    const reply = await kpay.request("PATCH", base, body);
    course = reply.course;
    renderCourse();
  }

  q("#course-edit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const region = q("#editor-error");
    showError(region, null);
    show(q("#edit-saved"), false);
    const title = q("#edit-title").value.trim();
    const price = parseYuan(q("#edit-price").value || "0");
    if (!title || price === null) {
      region.textContent = !title ? "请填写课程名称" : "价格不正确（最多两位小数）";
      show(region, true);
      return;
    }
    whileBusy(q("#edit-save"), async () => {
      try {
        await patchCourse({ title, price, description: q("#edit-description").value });
        q("#edit-saved").textContent = "已保存";
        show(q("#edit-saved"), true);
      } catch (error) {
        showError(region, error);
      }
    }, "保存中…");
  });

  q("#edit-cover-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const bar = q("#edit-cover-progress");
    showError(q("#editor-error"), null);
    show(bar, true);
    try {
      const uploaded = await uploadFile(kpay, file, { kind: "image", purpose: "cover",
        onProgress: (a, b) => { bar.value = fraction(a, b); } });
      await patchCourse({ cover_media_id: uploaded.id });
      q("#edit-saved").textContent = "封面已更新";
      show(q("#edit-saved"), true);
    } catch (error) {
      showError(q("#editor-error"), error);
    } finally {
      show(bar, false);
      event.target.value = "";
    }
  });

  for (const [id, action] of [["#edit-publish", "publish"], ["#edit-unpublish", "unpublish"]]) {
    q(id).addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
      showError(q("#editor-error"), null);
      try {
        course = (await kpay.post(`${base}/${action}`)).course;
        renderCourse();
      } catch (error) {
        showError(q("#editor-error"), error);
      }
    }));
  }

  // -- the lesson list ------------------------------------------------------------------------

  const lessonError = (error) => showError(q("#editor-lessons-error"), error);

  function renderLessons() {
    const count = course.lessons.length;
    q("#editor-lessons").replaceChildren(...course.lessons.map((lesson, i) => {
      const button = (text, label, action, cls = "btn plain") => {
        const b = el("button", { class: cls, type: "button", "aria-label": `${label}：${lesson.title}` }, text);
        b.addEventListener("click", () => whileBusy(b, () => action().catch(lessonError)));
        return b;
      };
      const up = button("↑ 上移", "上移", () => move(i, -1));
      const down = button("↓ 下移", "下移", () => move(i, 1));
      up.disabled = i === 0;
      down.disabled = i === count - 1;
      const toggle = button(lesson.published ? "下架" : "上架", lesson.published ? "下架" : "上架",
        () => setLessonPublished(lesson, !lesson.published));
      const remove = el("button", { class: "btn plain", type: "button", "aria-label": `删除：${lesson.title}` }, "删除");
      confirming(remove, "确认删除", () => deleteLesson(lesson).catch(lessonError));
      show(remove, !lesson.published);
      const tag = lesson.media ? mediaText({ [`${lesson.media.kind}_media_id`]: true,
        duration_seconds: lesson.media.duration_seconds }) : null;
      return el("li", { "data-id": lesson.id },
        el("span", { class: "lesson-name" },
          el("strong", {}, `${i + 1}. ${lesson.title}`,
            lesson.published ? null : el("span", { class: "state-tag" }, "已下架"),
            tag ? el("span", { class: "media-tag" }, tag) : null),
          el("span", { class: "muted small" }, releaseText(lesson.release))),
        el("div", { class: "row-actions" }, up, down,
          button("编辑", "编辑", () => form.open(lesson.id), "btn secondary"), toggle, remove));
    }));
  }

  async function move(index, step) {
    const ids = course.lessons.map((lesson) => lesson.id);
    const [moved] = ids.splice(index, 1);
    ids.splice(index + step, 0, moved);
    showError(q("#editor-lessons-error"), null);
    course = (await kpay.put(`${base}/lesson-order`, { lesson_ids: ids })).course;
    renderCourse();
    // Keep the keyboard where it was: on the moved lesson's same button.
    const row = q(`#editor-lessons li[data-id="${CSS.escape(moved)}"]`);
    const again = row?.querySelector(`button[aria-label^="${step < 0 ? "上移" : "下移"}"]`);
    (again && !again.disabled ? again : row?.querySelector("button"))?.focus();
  }

  async function setLessonPublished(lesson, published) {
    showError(q("#editor-lessons-error"), null);
    await kpay.request("PATCH", `${base}/lessons/${encodeURIComponent(lesson.id)}`, { published });
    await load();
  }

  async function deleteLesson(lesson) {
    showError(q("#editor-lessons-error"), null);
    course = (await kpay.request("DELETE", `${base}/lessons/${encodeURIComponent(lesson.id)}`)).course;
    if (form.editingId() === lesson.id) form.close();
    renderCourse();
  }

  q("#editor-add-lesson").addEventListener("click", () => form.open(null).catch(lessonError));

  await load();
  view.scrollIntoView({ block: "start" });
}
