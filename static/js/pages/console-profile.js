// The console's 个人资料 section (console.html #panel-profile): one form for how people
// see the consultant: nickname and avatar (PATCH /api/v1/me; the image uploaded with
// media.js uploadFile, purpose "avatar"), and, with consult_billing, the title and bio of
// the consultant profile (PUT /api/v1/consultants/me, the rate and minutes kept as they
// are). A link opens the public profile page (profile.html?id=).

import { $, avatar, el, show, showError, whileBusy } from "../ui.js";

const NAME_MAX = 20;
const AVATAR_MAX_BYTES = 10 * 1024 * 1024; // the server checks again; this saves a wait
// Control, invisible (zero-width, bidi) and line-break characters: refused as the server does.
const BAD_NAME = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}]/u;

function layout(me) {
  return el("section", { class: "card", id: "profile-card", "aria-labelledby": "profile-card-title" },
    el("h2", { id: "profile-card-title" }, "个人资料"),
    el("div", { class: "profile-edit-head" },
      el("span", { id: "pf-avatar" }),
      el("div", {},
        el("label", { class: "btn plain", for: "pf-avatar-file", id: "pf-avatar-pick" }, "更换头像"),
        el("input", { type: "file", id: "pf-avatar-file", accept: "image/jpeg,image/png,image/webp", hidden: true }),
        el("p", { class: "hint", id: "pf-avatar-state", role: "status" }, "JPG、PNG 或 WebP，10 MB 以内"))),
    el("form", { id: "pf-form", novalidate: true },
      el("div", { class: "field" },
        el("label", { for: "pf-name" }, "昵称"),
        el("input", { id: "pf-name", type: "text", maxlength: 40, autocomplete: "nickname", value: me.name || "" }),
        el("p", { class: "hint" }, `1–${NAME_MAX} 个字，别人在直播间、咨询和课程里看到的名字`)),
      el("div", { class: "field", id: "pf-title-field", hidden: true },
        el("label", { for: "pf-title" }, "头衔"),
        el("input", { id: "pf-title", type: "text", maxlength: 120, placeholder: "例如：资深职业规划师" })),
      el("div", { class: "field", id: "pf-bio-field", hidden: true },
        el("label", { for: "pf-bio" }, "个人简介"),
        el("textarea", { id: "pf-bio", rows: 5, maxlength: 1000, placeholder: "介绍你的经历和擅长的方向" }),
        el("p", { class: "hint", id: "pf-bio-count" }, "0 / 1000")),
      el("p", { class: "hint", id: "pf-consult-note", hidden: true }, "在「咨询」里设置价格后，可以填写头衔和简介"),
      el("div", { class: "alert", id: "pf-error", role: "alert", hidden: true }),
      el("p", { class: "notice small", id: "pf-saved", role: "status", hidden: true }),
      el("button", { class: "btn", type: "submit", id: "pf-save" }, "保存资料")),
    el("a", { class: "btn secondary", id: "pf-public", href: `/static/profile.html?id=${encodeURIComponent(me.id)}` }, "查看我的主页"));
}

/** Fill the profile panel. context: {kpay, me} (see console.js); profile.html mounts it
 * too for the reader's own page, with `onSaved(profile)` to draw the page again. */
export async function mount(panel, { kpay, me, onSaved = () => {}, publicLink = true }) {
  const q = (selector) => $(selector, panel);
  panel.replaceChildren(layout(me));
  show(q("#pf-public"), publicLink);
  let profile = { ...me };
  let consult = null; // the consultant profile (consult_billing), when there is one
  const drawAvatar = () => q("#pf-avatar").replaceChildren(avatar(profile, 72));
  drawAvatar();

  const paths = await kpay.apiPaths().catch(() => new Set());
  if (me.role === "consultant" && paths.has("/api/v1/consultants/me")) {
    try {
      ({ profile: consult } = await kpay.get("/api/v1/consultants/me"));
    } catch (error) {
      if (error.code !== "consultant_not_found") showError(q("#pf-error"), error);
    }
    show(q("#pf-title-field"), Boolean(consult));
    show(q("#pf-bio-field"), Boolean(consult));
    show(q("#pf-consult-note"), !consult);
    if (consult) {
      q("#pf-title").value = consult.title || "";
      q("#pf-bio").value = consult.bio || "";
    }
  }
  const countBio = () => { q("#pf-bio-count").textContent = `${q("#pf-bio").value.length} / 1000`; };
  q("#pf-bio").addEventListener("input", countBio);
  countBio();

  let media = null; // media.js, loaded when there is an upload service
  if (paths.has("/api/v1/media/uploads")) {
    media = await import("../media.js").catch(() => null);
  }
  show(q("#pf-avatar-pick"), Boolean(media));
  if (!media) q("#pf-avatar-state").textContent = "";

  q("#pf-avatar-file").addEventListener("change", async (event) => {
    const file = event.currentTarget.files?.[0];
    event.currentTarget.value = ""; // the same file again is a new choice
    if (!file || !media) return;
    const state = q("#pf-avatar-state");
    showError(q("#pf-error"), null);
    if (!/^image\/(jpeg|png|webp)$/.test(file.type) || file.size > AVATAR_MAX_BYTES) {
      q("#pf-error").textContent = "请选择 10 MB 以内的 JPG、PNG 或 WebP 图片";
      show(q("#pf-error"), true);
      return;
    }
    try {
      state.textContent = "上传中…";
      const uploaded = await media.uploadFile(kpay, file, {
        kind: "image", purpose: "avatar",
        onProgress: (done, total) => { state.textContent = `上传中 ${Math.round((done / (total || 1)) * 100)}%`; },
      });
      profile = await kpay.request("PATCH", "/api/v1/me", { avatar_media_id: uploaded.id });
      drawAvatar();
      state.textContent = "头像已更新";
      onSaved(profile);
    } catch (error) {
      state.textContent = "";
      showError(q("#pf-error"), error);
    }
  });

  q("#pf-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const region = q("#pf-error");
    showError(region, null);
    show(q("#pf-saved"), false);
    const name = q("#pf-name").value.trim();
    if (!name || [...name].length > NAME_MAX || BAD_NAME.test(name)) {
      region.textContent = `昵称须为 1–${NAME_MAX} 个字，不能含换行或不可见字符`;
      region.dataset.code = "invalid_name";
      show(region, true);
      q("#pf-name").focus();
      return;
    }
    await whileBusy(q("#pf-save"), async () => {
      try {
        profile = await kpay.request("PATCH", "/api/v1/me", { name });
        if (consult) {
          ({ profile: consult } = await kpay.put("/api/v1/consultants/me", {
            rate_per_minute: consult.rate_per_minute, min_minutes: consult.min_minutes,
            max_minutes: consult.max_minutes, available: consult.available,
            title: q("#pf-title").value.trim(), bio: q("#pf-bio").value.trim(),
          }));
        }
        q("#pf-name").value = profile.name;
        drawAvatar();
        q("#pf-saved").textContent = "资料已保存";
        show(q("#pf-saved"), true);
        onSaved(profile, consult);
      } catch (error) {
        showError(region, error);
      }
    }, "保存中…");
  });
}
