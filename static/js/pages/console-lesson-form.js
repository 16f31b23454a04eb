// The lesson form of the console's course editor (console-course-editor.js): title, a small
// toolbar over the Markdown (加粗, 标题, 列表, 引用; 插入图片 uploads a slide), the tabs 编辑 /
// 预览 (the server's rendering), audio or video uploaded with progress, and the release rule.
// API: docs/course_drip.md "Editing a course" and "Lesson media".

import { uploadFile } from "../media.js";
import { $, el, show, showError, whileBusy } from "../ui.js";
import { field, releaseInputs } from "./console-courses.js";
import { clockText } from "./lesson-player.js";

/** An upload's progress as 0..1, whatever media.js reports (fraction, bytes, or event). */
export function fraction(a, b) {
  if (a && typeof a === "object") return a.total ? a.loaded / a.total : 0;
  return b ? a / b : a;
}

export function mediaText(lesson) {
  if (lesson.audio_media_id) return `音频${lesson.duration_seconds ? ` ${clockText(lesson.duration_seconds)}` : ""}`;
  if (lesson.video_media_id) return `视频${lesson.duration_seconds ? ` ${clockText(lesson.duration_seconds)}` : ""}`;
  return null;
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

/**
 * The lesson form. options: {kpay, base (the course's API path), course: () => the course
 * as last loaded, onSaved: async () => {} (reload the course)}.
 * Returns {element, open(lessonId or null for a new lesson), close(), editingId()}.
 */
export function lessonForm({ kpay, base, course: currentCourse, onSaved }) {
  const releaseBox = releaseInputs("lf");
  const view = el("section", { class: "card", id: "lesson-form-card", hidden: true, "aria-labelledby": "lesson-form-title" },
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
      el("button", { class: "btn plain", type: "button", id: "lf-cancel" }, "取消")));
  const q = (selector) => $(selector, view);
  let editing = null; // the lesson in the form (null: a new one)
  let media = null; // {audio_media_id, video_media_id, duration_seconds} chosen in the form

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
    const index = editing ? currentCourse().lessons.findIndex((l) => l.id === editing.id) : currentCourse().lessons.length;
    q("#lesson-form-title").textContent = editing ? `编辑第 ${index + 1} 课` : `新课时（第 ${index + 1} 课）`;
    q("#lf-title").value = editing?.title || "";
    q("#lf-body").value = editing?.body || "";
    media = editing && (editing.audio_media_id || editing.video_media_id) ? {
      audio_media_id: editing.audio_media_id, video_media_id: editing.video_media_id,
      duration_seconds: editing.duration_seconds } : null;
    releaseBox.set(editing?.release || { after_days: 0 });
    renderMedia();
    selectTab(false);
    show(view, true);
    view.scrollIntoView({ block: "start" });
    q("#lf-title").focus();
  }

  q("#lf-cancel").addEventListener("click", () => {
    show(view, false);
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
    const index = editing ? currentCourse().lessons.findIndex((l) => l.id === editing.id) : currentCourse().lessons.length;
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
        show(view, false);
        editing = null;
        await onSaved();
      } catch (error) {
        showError(region, error);
      }
    }, "保存中…");
    return null;
  });

  return {
    element: view,
    open: openLessonForm,
    close() {
      show(view, false);
      editing = null;
    },
    editingId: () => editing?.id ?? null,
  };
}
