// The console's course editor (opened with 编辑 from 我的课程, console-courses.js): the
// course's title, description, price and cover (uploaded, purpose "cover"), publish and
// withdraw; its lessons in order with 上移/下移, 编辑, 下架/上架 and deleting a withdrawn one;
// the lesson form with a small toolbar over Markdown (加粗, 标题, 列表, 引用, 插入图片 as an
// uploaded slide), a 预览 tab rendered by the server, audio or video uploaded with progress,
// and the release rule. API: docs/course_drip.md "Editing a course".

import { uploadFile } from "../media.js";
import { formatFen, parseYuan } from "../money.js";
import { $, el, show, showError, whileBusy } from "../ui.js";
import { ensureStylesheet, field, releaseInputs, releaseText } from "./console-courses.js";
import { clockText } from "./lesson-player.js";

const yuanText = (fen) => (fen / 100).toFixed(2).replace(/\.00$/, "");

/** An upload's progress as 0..1, whatever media.js reports (fraction, bytes, or event). */
function fraction(a, b) {
  if (a && typeof a === "object") return a.total ? a.loaded / a.total : 0;
  return b ? a / b : a;
}

function mediaText(lesson) {
  if (lesson.audio_media_id) return `音频${lesson.duration_seconds ? ` ${clockText(lesson.duration_seconds)}` : ""}`;
  if (lesson.video_media_id) return `视频${lesson.duration_seconds ? ` ${clockText(lesson.duration_seconds)}` : ""}`;
  return null;
}

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

/** Wrap or prefix the textarea's selection (the toolbar's buttons). */
function editSelection(textarea, how) {
  const { selectionStart: start, selectionEnd: end, value } = textarea;
  const picked = value.slice(start, end);
  let text;
  if (how === "bold") text = `**${picked || "加粗文字"}**`;
  else {
    const prefix = { heading: "## ", list: "- ", quote: "> " }[how];
    const lines = (picked || { heading: "小标题", list: "列表项", quote: "引用内容" }[how]).split("\n");
    text = lines.map((line) => prefix + line.replace(/^(##\s|-\s|>\s)/, "")).join("\n");
    if (start > 0 && value[start - 1] !== "\n") text = `\n${text}`;
  }
  insertText(textarea, text, start, end);
}

function insertText(textarea, text, start = textarea.selectionStart, end = textarea.selectionEnd) {
  textarea.setRangeText(text, start, end, "end");
  textarea.focus();
  textarea.dispatchEvent(new Event("input"));
}

function layout() {
  const releaseBox = releaseInputs("lf");
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
      el("button", { class: "btn secondary", type: "button", id: "editor-add-lesson" }, "添加课时")),
    el("section", { class: "card", id: "lesson-form-card", hidden: true, "aria-labelledby": "lesson-form-title" },
      el("h2", { id: "lesson-form-title" }, "新课时"),
      el("form", { class: "lesson-form", id: "lesson-form", novalidate: true, "aria-labelledby": "lesson-form-title" },
        field("lf-title", "课时标题", el("input", { id: "lf-title", type: "text", maxlength: "200" })),
        el("div", { class: "toolbar", role: "toolbar", "aria-label": "格式", "aria-controls": "lf-body" },
          el("button", { class: "btn plain", type: "button", "data-format": "bold" }, "加粗"),
          el("button", { class: "btn plain", type: "button", "data-format": "heading" }, "标题"),
          el("button", { class: "btn plain", type: "button", "data-format": "list" }, "列表"),
          el("button", { class: "btn plain", type: "button", "data-format": "quote" }, "引用"),
          el("label", { class: "btn plain file-button", for: "lf-image" }, "插入图片",
            el("input", { id: "lf-image", type: "file", accept: "image/*" }))),
        el("div", { class: "editor-tabs", role: "tablist", "aria-label": "正文" },
          el("button", { type: "button", role: "tab", id: "lf-tab-edit", "aria-controls": "lf-edit",
            "aria-selected": "true" }, "编辑"),
          el("button", { type: "button", role: "tab", id: "lf-tab-preview", "aria-controls": "lf-preview",
            "aria-selected": "false", tabindex: "-1" }, "预览")),
        el("div", { role: "tabpanel", id: "lf-edit", "aria-labelledby": "lf-tab-edit" },
          field("lf-body", "正文（Markdown）", el("textarea", { id: "lf-body", rows: "8" }))),
        el("div", { role: "tabpanel", id: "lf-preview", "aria-labelledby": "lf-tab-preview", hidden: true },
          el("div", { class: "preview lesson-body", id: "lf-preview-body" })),
        el("progress", { class: "upload-progress", id: "lf-image-progress", max: "1", value: "0",
          "aria-label": "图片上传进度", hidden: true }),
        el("div", { class: "field" },
          el("span", { class: "label" }, "音频或视频"),
          el("p", { class: "small", id: "lf-media-text" }, "未上传"),
          el("div", { class: "row" },
            el("label", { class: "btn secondary file-button", for: "lf-media" }, "上传音频或视频",
              el("input", { id: "lf-media", type: "file", accept: "audio/*,video/*" })),
            el("button", { class: "btn plain", type: "button", id: "lf-media-remove", hidden: true }, "移除")),
          el("progress", { class: "upload-progress", id: "lf-media-progress", max: "1", value: "0",
            "aria-label": "音视频上传进度", hidden: true })),
        releaseBox.node,
        el("div", { class: "alert", id: "lesson-form-error", role: "alert", hidden: true }),
        el("button", { class: "btn", type: "submit", id: "lf-save" }, "保存课时"),
        el("button", { class: "btn plain", type: "button", id: "lf-cancel" }, "取消"))));
  return { view, releaseBox };
}

/**
 * Open the editor of course `courseId` in `panel` (the 课程 tabpanel), hiding `hide`
 * (the list and the create form) until 我的课程 is tapped; then `onClose()`.
 */
export async function openEditor(panel, { kpay, courseId, hide = [], onClose = () => {} }) {
  ensureStylesheet();
  const { view, releaseBox } = layout();
  const q = (selector) => $(selector, view);
  const base = `/api/v1/courses/${encodeURIComponent(courseId)}`;
  let course = null;
  let editing = null; // the lesson in the form (null: a new one)
  let media = null; // {audio_media_id, video_media_id, duration_seconds} chosen in the form

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
          button("编辑", "编辑", () => openLessonForm(lesson.id), "btn secondary"), toggle, remove));
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
    if (editing?.id === lesson.id) show(q("#lesson-form-card"), false);
    renderCourse();
  }

  // -- the lesson form ---------------------------------------------------------------------------

  function renderMedia() {
    const text = media ? mediaText(media) : null;
    q("#lf-media-text").textContent = text ? `已上传${text}` : "未上传";
    show(q("#lf-media-remove"), Boolean(text));
  }

  function selectTab(preview) {
    q("#lf-tab-edit").setAttribute("aria-selected", String(!preview));
    q("#lf-tab-preview").setAttribute("aria-selected", String(preview));
    q("#lf-tab-edit").tabIndex = preview ? -1 : 0;
    q("#lf-tab-preview").tabIndex = preview ? 0 : -1;
    show(q("#lf-edit"), !preview);
    show(q("#lf-preview"), preview);
  }

  async function openLessonForm(lessonId) {
    showError(q("#lesson-form-error"), null);
    editing = lessonId ? (await kpay.get(`${base}/lessons/${encodeURIComponent(lessonId)}`)).lesson : null;
    const index = editing ? course.lessons.findIndex((l) => l.id === editing.id) : course.lessons.length;
    q("#lesson-form-title").textContent = editing ? `编辑第 ${index + 1} 课` : `新课时（第 ${index + 1} 课）`;
    q("#lf-title").value = editing?.title || "";
    q("#lf-body").value = editing?.body || "";
    media = editing && (editing.audio_media_id || editing.video_media_id) ? {
      audio_media_id: editing.audio_media_id, video_media_id: editing.video_media_id,
      duration_seconds: editing.duration_seconds } : null;
    releaseBox.set(editing?.release || { after_days: 0 });
    renderMedia();
    selectTab(false);
    show(q("#lesson-form-card"), true);
    q("#lesson-form-card").scrollIntoView({ block: "start" });
    q("#lf-title").focus();
  }

  q("#editor-add-lesson").addEventListener("click", () => openLessonForm(null).catch(lessonError));
  q("#lf-cancel").addEventListener("click", () => {
    show(q("#lesson-form-card"), false);
    editing = null;
  });

  for (const button of view.querySelectorAll("[data-format]")) {
    button.addEventListener("click", () => editSelection(q("#lf-body"), button.dataset.format));
  }

  q("#lf-image").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const bar = q("#lf-image-progress");
    showError(q("#lesson-form-error"), null);
    show(bar, true);
    try {
      const uploaded = await uploadFile(kpay, file, { kind: "image", purpose: "slide",
        onProgress: (a, b) => { bar.value = fraction(a, b); } });
      // Slides are paid content: the server swaps media:<id> for a URL signed per reader.
      insertText(q("#lf-body"), `\n![图片](media:${uploaded.id})\n`);
    } catch (error) {
      showError(q("#lesson-form-error"), error);
    } finally {
      show(bar, false);
      event.target.value = "";
    }
  });

  q("#lf-media").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const kind = file.type.startsWith("video/") ? "video" : "audio";
    const bar = q("#lf-media-progress");
    showError(q("#lesson-form-error"), null);
    bar.value = 0;
    show(bar, true);
    q("#lf-media-text").textContent = `上传中：${file.name}`;
    try {
      const uploaded = await uploadFile(kpay, file, { kind, purpose: "lesson",
        onProgress: (a, b) => { bar.value = fraction(a, b); } });
      media = { audio_media_id: kind === "audio" ? uploaded.id : null,
        video_media_id: kind === "video" ? uploaded.id : null,
        duration_seconds: uploaded.duration_seconds ?? null };
    } catch (error) {
      showError(q("#lesson-form-error"), error);
    } finally {
      show(bar, false);
      renderMedia();
      event.target.value = "";
    }
  });

  q("#lf-media-remove").addEventListener("click", () => {
    media = { audio_media_id: null, video_media_id: null, duration_seconds: null };
    renderMedia();
  });

  const showPreview = async () => {
    selectTab(true);
    const box = q("#lf-preview-body");
    box.textContent = "正在生成预览…";
    try {
      const { html } = await kpay.post(`${base}/preview`, { body: q("#lf-body").value });
      // Rendered from Markdown and cleaned by the server (nh3), exactly as students get
      // a lesson body: the one HTML this section inserts.
      box.innerHTML = html || "";
      if (!html) box.textContent = "（正文为空）";
    } catch (error) {
      box.textContent = "";
      showError(q("#lesson-form-error"), error);
    }
  };
  q("#lf-tab-preview").addEventListener("click", showPreview);
  q("#lf-tab-edit").addEventListener("click", () => selectTab(false));
  for (const tab of [q("#lf-tab-edit"), q("#lf-tab-preview")]) {
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const preview = tab.id === "lf-tab-edit";
      if (preview) showPreview(); else selectTab(false);
      q(preview ? "#lf-tab-preview" : "#lf-tab-edit").focus();
    });
  }

  q("#lesson-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const region = q("#lesson-form-error");
    showError(region, null);
    const fail = (text, input) => {
      region.textContent = text;
      show(region, true);
      input.focus();
      return null;
    };
    const title = q("#lf-title").value.trim();
    if (!title) return fail("请填写课时标题", q("#lf-title"));
    const body = q("#lf-body").value;
    const index = editing ? course.lessons.findIndex((l) => l.id === editing.id) : course.lessons.length;
    const hasMedia = Boolean(media?.audio_media_id || media?.video_media_id || editing?.media_url);
    if (!body.trim() && !hasMedia) return fail("请填写正文，或上传音频、视频", q("#lf-body"));
    const release = releaseBox.read(`第 ${index + 1} 课`, index === 0, fail);
    if (!release) return null;
    const payload = { title, body, release };
    const before = editing || {};
    if (media && (media.audio_media_id !== (before.audio_media_id ?? null)
        || media.video_media_id !== (before.video_media_id ?? null))) {
      payload.audio_media_id = media.audio_media_id;
      payload.video_media_id = media.video_media_id;
    }
    whileBusy(q("#lf-save"), async () => {
      try {
        if (editing) await kpay.request("PATCH", `${base}/lessons/${encodeURIComponent(editing.id)}`, payload);
        else await kpay.post(`${base}/lessons`, payload);
        show(q("#lesson-form-card"), false);
        editing = null;
        await load();
      } catch (error) {
        showError(region, error);
      }
    }, "保存中…");
    return null;
  });

  await load();
  view.scrollIntoView({ block: "start" });
}
