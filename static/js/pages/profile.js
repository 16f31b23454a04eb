// A person's public page (profile.html?id=<user>): big avatar, nickname, title, followers
// and 关注 / 已关注; with consult_billing the rate and a 发起咨询 link (consult.html with
// the consultant chosen), the bio; their rooms and courses as cards to open. Everything
// comes from GET /api/v1/users/{id}/profile (no login needed; with one, "following" is
// the reader's); follow is PUT / DELETE /api/v1/users/{id}/follow. docs/pages.md.

import { KPay, formatFen } from "../kpay.js";
import { mountShareBar } from "../share.js";
import { $, avatar, el, formatTime, show, showError, whileBusy } from "../ui.js";

const ROOM_STATE_TEXT = { live: "直播中", scheduled: "未开始", ended: "回放" };

const kpay = new KPay();
const userId = new URLSearchParams(location.search).get("id");
let me = null;
let profile = null;

async function start() {
  try {
    if (!userId) {
      show($("#loading"), false);
      $("#error").textContent = "缺少用户编号，请从直播间、课程或咨询页进入主页";
      show($("#error"), true);
      return;
    }
    me = await kpay.me().catch(() => null); // reading needs no login
    ({ profile } = await kpay.get(`/api/v1/users/${encodeURIComponent(userId)}/profile`));
    show($("#loading"), false);
    render();
  } catch (error) {
    show($("#loading"), false);
    if (error.code === "user_not_found") {
      $("#error").textContent = "找不到这位用户，可能已注销或链接有误";
      show($("#error"), true);
    } else {
      showError($("#error"), error);
    }
  }
}

function render() {
  const sections = profile.sections || {};
  document.title = `${profile.name} 的主页 - kpay`;
  $("#profile-avatar").replaceChildren(avatar(profile, 88));
  $("#profile-name").textContent = profile.name;
  const title = sections.consult?.title || "";
  $("#profile-title").textContent = title;
  show($("#profile-title"), Boolean(title));
  renderFollow();
  show($("#edit"), me?.id === profile.id);
  if (me?.id === profile.id) loadFollowing().catch((error) => showError($("#error"), error));
  show($("#hero"), true);
  renderConsult(sections.consult);
  renderRooms(sections.rooms || []);
  renderCourses(sections.courses || []);
  // Followers, and "nothing yet", mean something only for a consultant (who can be followed).
  const consultant = profile.role === "consultant";
  show($("#empty"), consultant && !sections.consult && !sections.rooms?.length && !sections.courses?.length);
  show($(".profile-stats"), consultant);
  // Only a consultant's page has a poster (GET /api/v1/posters/user:<id>, docs/api.md).
  if (consultant) {
    mountShareBar($("#hero"), { resource: `user:${profile.id}`, card: {
      title: `${profile.name} 的主页`, desc: title, imgUrl: profile.avatar_url,
      link: `/static/profile.html?id=${encodeURIComponent(profile.id)}` } });
  }
}

// -- follow ------------------------------------------------------------------------------

function renderFollow() {
  $("#profile-followers").textContent = String(profile.followers);
  const followable = profile.role === "consultant" && me?.id !== profile.id;
  const button = $("#follow");
  show(button, followable && Boolean(me));
  show($("#follow-login"), followable && !me);
  button.setAttribute("aria-pressed", String(profile.following));
  button.textContent = profile.following ? "已关注" : "关注";
  button.setAttribute("aria-label", profile.following ? `已关注 ${profile.name}，点按取消关注` : `关注 ${profile.name}`);
}

$("#follow").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
  showError($("#follow-error"), null);
  const path = `/api/v1/users/${encodeURIComponent(profile.id)}/follow`;
  try {
    const state = await kpay.request(profile.following ? "DELETE" : "PUT", path);
    profile.following = state.following;
    profile.followers = state.followers;
  } catch (error) {
    showError($("#follow-error"), error);
  }
  renderFollow();
}));

// -- one's own page: edit it here ------------------------------------------------------------

let editing = null; // the editor's mount, once opened

$("#edit").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(open));
  button.textContent = open ? "收起" : "编辑资料";
  show($("#editor"), open);
  if (!open || editing) return;
  editing = import("./console-profile.js").then(({ mount }) => mount($("#editor"), {
    kpay, me, publicLink: false, onSaved: async () => {
      ({ profile } = await kpay.get(`/api/v1/users/${encodeURIComponent(userId)}/profile`));
      render();
    },
  })).catch((error) => {
    editing = null;
    showError($("#error"), error);
  });
});

/** 我的关注 on one's own page: the consultants followed, newest first (one page). */
async function loadFollowing() {
  const { following } = await kpay.get("/api/v1/me/following?limit=50");
  $("#following-list").replaceChildren(...following.map((person) => el("li", {},
    el("a", { href: `/static/profile.html?id=${encodeURIComponent(person.id)}` },
      avatar(person, 44), el("span", { class: "item-body" },
        el("span", { class: "item-title" }, person.name),
        el("span", { class: "item-meta" }, `${formatTime(person.followed_at)} 关注`))))));
  show($("#following-empty"), following.length === 0);
  show($("#following"), true);
}

// -- consultation and bio -----------------------------------------------------------------------

function renderConsult(consult) {
  show($("#consult"), Boolean(consult));
  show($("#bio"), Boolean(consult?.bio));
  if (!consult) return;
  $("#bio-text").textContent = consult.bio || "";
  $("#consult-rate").textContent = `${formatFen(consult.rate_per_minute)}/分钟`;
  $("#consult-minutes").textContent = ` 最少 ${consult.min_minutes} 分钟 · 最长 ${consult.max_minutes} 分钟`;
  let state = "可以发起咨询，接受后按分钟计费";
  if (!consult.available) state = "暂停接单";
  else if (consult.busy) state = "正在咨询中，请稍后";
  $("#consult-state").textContent = state;
  const link = $("#consult-start");
  link.href = `/static/consult.html?consultant=${encodeURIComponent(profile.id)}`;
  show(link, consult.available && me?.id !== profile.id);
}

// -- rooms and courses ------------------------------------------------------------------------

function card(href, thumb, title, ...meta) {
  return el("li", {}, el("a", { href }, thumb,
    el("span", { class: "item-body" }, el("span", { class: "item-title" }, title),
      el("span", { class: "item-meta" }, ...meta))));
}

function renderRooms(rooms) {
  show($("#rooms"), rooms.length > 0);
  $("#room-list").replaceChildren(...rooms.map((room) => {
    let when = "";
    if (room.state === "scheduled") when = formatTime(room.starts_at);
    else if (room.state === "live" && room.started_at) when = `${formatTime(room.started_at)} 开始`;
    return card(`/static/room.html?id=${encodeURIComponent(room.id)}`,
      el("span", { class: "thumb blank", "aria-hidden": "true" }, "直播"),
      room.title,
      el("span", { class: "room-state", "data-state": room.state }, ROOM_STATE_TEXT[room.state] || ""),
      when ? el("span", {}, when) : null,
      el("span", { class: "price" }, room.ticket_price ? formatFen(room.ticket_price) : "免费"));
  }));
}

/** A cover only from this server or https (the page's image policy). */
function cover(url, title) {
  if (typeof url === "string" && (/^(\/(?!\/)|https:\/\/)/.test(url) || url.startsWith(`${location.origin}/`))) {
    return el("img", { class: "thumb", src: url, alt: `课程「${title}」的封面`, loading: "lazy" });
  }
  return el("span", { class: "thumb blank", "aria-hidden": "true" }, "课程");
}

function renderCourses(courses) {
  show($("#courses"), courses.length > 0);
  $("#course-list").replaceChildren(...courses.map((course) => card(
    `/static/course.html?id=${encodeURIComponent(course.id)}`,
    cover(course.cover, course.title),
    course.title,
    el("span", {}, `${course.lesson_count} 节`),
    el("span", { class: "price" }, course.price ? formatFen(course.price) : "免费"))));
}

start();
