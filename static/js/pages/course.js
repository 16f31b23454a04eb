// Courses (course.html): without ?id= the student's courses and the published ones; with
// ?id=<course> the course, buying it (wallet, or WeChat Pay through the PaymentPanel),
// its lessons with lock badges and countdowns to unlocks_at, reading a lesson, marking it
// completed, and progress. lesson_unlocked on user:<id> updates the list live. Once bought
// the price says 已购 and 继续学习 opens the lesson touched last; ?lesson=<id> is the lesson
// page (player that resumes, watermark, body, prev/next), so a reload comes back to it.

import { People } from "../people.js";
import { KPay, formatFen } from "../kpay.js";
import { PaymentPanel, walletUrl } from "../pay.js";
import { mountShareBar } from "../share.js";
import { $, bindConnectionBadge, el, errorText, formatTime, show, showError, whileBusy } from "../ui.js";
import { releaseText } from "./console-courses.js";
import { shortfallText } from "./consult-call.js";
import { clockText, mountPlayer, watermark } from "./lesson-player.js";

const kpay = new KPay();
const socket = kpay.socket();
const params = new URLSearchParams(location.search);
const courseId = params.get("id");
const errorBox = $("#error");
const names = new People(kpay); // the author's nickname and face
const coursePath = (suffix = "") => `/api/v1/courses/${encodeURIComponent(courseId)}${suffix}`;

let me = null;
let course = null;
let lastLessonId = null; // the lesson this student opened last (继续学习)
let lessons = [];
let reading = null; // the lesson open in the reader
let serverOffsetMs = 0; // the server clock minus ours (the dev clock can be ahead)
let devMode = false;
const askedAt = new Set(); // unlocks_at times already refetched for (once each)
let panel = null;
let player = null; // the open lesson's player (lesson-player.js)

bindConnectionBadge($("#connection"), socket);
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized"); // the home page says why
  location.href = "/";
});

async function start() {
  try {
    const [user, dev] = await Promise.all([kpay.me(), kpay.devEnabled()]);
    show($("#loading"), false);
    if (!user) {
      show($("#need-login"), true);
      return;
    }
    me = user;
    devMode = dev;
    if (dev) await readServerClock();
    if (!courseId) {
      socket.subscribe(`user:${me.id}`, {
        onEvent: ({ type }) => {
          if (type === "lesson_unlocked") showCatalog().catch((e) => showError(errorBox, e));
        },
      });
      socket.connect();
      await showCatalog();
      return;
    }
    panel = new PaymentPanel($("#payment"), { kpay, dev, onPaid: () => paid() });
    socket.subscribe(`user:${me.id}`, {
      onEvent: personal,
      onResync: () => loadLessons().catch((e) => showError($("#lessons-error"), e)),
    });
    socket.connect();
    await loadCourse();
    const returning = params.get("order"); // back from WeChat H5 pay
    if (returning && !course.enrolled) await panel.resume(returning);
    const lessonId = params.get("lesson");
    if (lessonId && (course.enrolled || course.author_id === me.id)) {
      await openLesson(lessonId).catch((e) => showLessonError($("#lessons-error"), e));
    }
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

/** Countdowns are counted on the server's clock: in dev mode it may have been advanced. */
async function readServerClock() {
  const { now } = await kpay.get("/api/v1/dev/clock");
  serverOffsetMs = new Date(now).getTime() - Date.now();
}

const serverNow = () => Date.now() + serverOffsetMs;

// -- the list without an id ----------------------------------------------------------------------

async function showCatalog() {
  const [mine, published] = await Promise.all([
    kpay.get("/api/v1/me/courses"), kpay.get("/api/v1/courses?limit=50"),
  ]);
  const link = (c) => el("a", { href: `/static/course.html?id=${encodeURIComponent(c.id)}` }, c.title);
  // The cover is decoration beside the linked title: empty alt.
  const thumb = (c) => (c.cover ? el("img", { class: "course-thumb", src: c.cover, alt: "" }) : null);
  const owned = new Set(mine.courses.map(({ course: c }) => c.id));
  $("#mine-list").replaceChildren(...mine.courses.map(({ course: c, progress }) => el("li", { class: "with-thumb" },
    thumb(c),
    el("div", {},
      el("p", {}, el("strong", {}, link(c))),
      el("p", { class: "muted small" }, `已完成 ${progress.completed}/${progress.total}` +
        (progress.next_unlock_at ? ` · 下一课 ${formatTime(progress.next_unlock_at)} 解锁` : ""))))));
  show($("#mine-empty"), mine.courses.length === 0);
  $("#catalog-list").replaceChildren(...published.courses.map((c) => el("li", { class: "with-thumb" },
    thumb(c),
    el("div", {},
      el("p", { class: "history-head" }, el("strong", {}, link(c)),
        owned.has(c.id) ? el("span", { class: "owned" }, ownedText(c))
          : el("span", { class: "price" }, c.price ? formatFen(c.price) : "免费")),
      el("p", { class: "muted small" }, `${c.lessons.length} 课时`)))));
  show($("#catalog-empty"), published.courses.length === 0);
  show($("#mine"), true);
  show($("#catalog"), true);
}

/** 已购 for a paid course, 已报名 for a free one. */
const ownedText = (c) => (c.price ? "已购" : "已报名");

// -- one course ---------------------------------------------------------------------------------

async function loadCourse() {
  const reply = await kpay.get(coursePath());
  course = { ...reply.course, enrolled: reply.enrolled };
  await names.load([course.author_id]); // the author by nickname and face, linked to their page
  $("#course-author")?.remove();
  $("#course-title").after(el("p", { id: "course-author", class: "course-author" },
    names.link(course.author_id, { fallback: "讲师", role: "讲师" })));
  document.title = `${course.title} - kpay`;
  $("#page-title").textContent = "课程";
  $("#course-title").textContent = course.title;
  $("#course-cover").src = course.cover || "";
  show($("#course-cover"), Boolean(course.cover));
  // Bought: the price is no longer news; say it is theirs.
  $("#course-price").replaceChildren(course.enrolled ? el("span", { class: "owned" }, ownedText(course))
    : course.price ? formatFen(course.price) : "免费");
  lastLessonId = reply.last_lesson_id || null;
  // description_html is Markdown rendered and then sanitised by the server (nh3: no
  // scripts, no event handlers, only http/https/mailto links), so it may go in as HTML.
  $("#course-description").innerHTML = course.description_html || "";
  show($("#course-description"), Boolean(course.description_html));
  show($("#course"), true);
  $("#buy-topup").href = walletUrl(); // back here after the top-up (返回继续购买)
  mountShareBar($("#course"), { resource: `course:${course.id}`, card: {
    title: course.title, desc: course.description, imgUrl: course.cover_url || course.cover,
    link: `/static/course.html?id=${encodeURIComponent(course.id)}` } });
  const author = course.author_id === me.id;
  if (course.enrolled || author) {
    show($("#buy"), false);
    show($("#syllabus"), false);
    await loadLessons();
  } else {
    $("#buy-wallet").textContent = course.price ? `余额支付 ${formatFen(course.price)}` : "免费报名";
    show($("#buy-wechat"), course.price > 0);
    show($("#buy"), true);
    renderSyllabus();
  }
}

function renderSyllabus() {
  $("#syllabus-list").replaceChildren(...course.lessons.map((lesson) => el("li", {},
    el("span", { class: "lesson-name" }, el("strong", {}, lesson.title),
      el("span", { class: "muted small" }, releaseText(lesson.release))))));
  show($("#syllabus"), true);
}

async function buy(channels) {
  showBuyError(null);
  try {
    await panel.start({ kind: "course", course_id: courseId }, channels);
  } catch (error) {
    showBuyError(error);
  }
}

function showBuyError(error) {
  show($("#buy-error"), Boolean(error));
  if (!error) return;
  const short = error.code === "insufficient_balance";
  $("#buy-error-text").textContent = short ? shortfallText(error)
    : error.code === "already_enrolled" ? "你已拥有此课程"
      : error.code === "enrollment_pending" ? "已有一笔待支付的订单，请先完成或等待其关闭"
        : errorText(error);
  $("#buy-error").dataset.code = error.code || "";
  show($("#buy-topup"), short);
}

$("#buy-wallet").addEventListener("click", (event) =>
  whileBusy(event.currentTarget, () => buy(["wallet"]), "支付中…"));
$("#buy-wechat").addEventListener("click", (event) =>
  whileBusy(event.currentTarget, () => buy(undefined), "正在下单…"));

async function paid() {
  panel.close();
  // The order is fulfilled right after it is paid; the enrollment may lag a moment.
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const reply = await kpay.get(coursePath());
    if (reply.enrolled) break;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  await loadCourse();
  $("#unlock-note").textContent = "购买成功，开始学习吧！";
  show($("#unlock-note"), true);
}

// -- lessons --------------------------------------------------------------------------------------

async function loadLessons() {
  lessons = await kpay.get(coursePath("/lessons"));
  renderLessons();
  show($("#lessons-card"), true);
  renderContinue();
  if (course.author_id !== me.id) await loadProgress();
}

/** 继续学习: the lesson touched last, else the first open one not completed. */
function continueTarget() {
  const open = lessons.filter((lesson) => lesson.unlocked);
  return open.find((lesson) => lesson.id === lastLessonId)
    || open.find((lesson) => !lesson.completed) || open[0] || null;
}

function renderContinue() {
  const target = continueTarget();
  const button = $("#continue");
  show(button, Boolean(target) && course.enrolled);
  if (target) button.setAttribute("aria-label", `继续学习：${target.title}`);
}

$("#continue").addEventListener("click", () => {
  const target = continueTarget();
  if (target) openLesson(target.id).catch((e) => showError($("#lessons-error"), e));
});

/** "音频 12:30" / "视频": the lesson's medium from the syllabus. */
function mediaTag(lessonId) {
  const media = course.lessons.find((lesson) => lesson.id === lessonId)?.media;
  if (!media) return null;
  const name = media.kind === "video" ? "视频" : "音频";
  return el("span", { class: "media-tag" },
    media.duration_seconds ? `${name} ${clockText(media.duration_seconds)}` : name);
}

async function loadProgress() {
  const { progress } = await kpay.get(coursePath("/progress"));
  renderProgress(progress);
}

function renderProgress(progress) {
  $("#progress-text").textContent = `学习进度：已完成 ${progress.completed}/${progress.total} 课（${progress.percent}%）`;
  $("#progress-fill").style.width = `${progress.percent}%`;
  $("#progress-bar").setAttribute("aria-valuenow", String(progress.percent));
  show($("#progress-box"), true);
}

function renderLessons() {
  $("#lessons").replaceChildren(...lessons.map((lesson, i) => {
    const badge = el("span", { class: "lock", "data-locked": String(!lesson.unlocked),
      "data-completed": String(Boolean(lesson.completed)) },
    lesson.completed ? "已完成" : lesson.unlocked ? "已解锁" : "未解锁");
    const when = el("span", { class: "muted small countdown", "data-unlocks-at": lesson.unlocks_at || "" });
    const open = el("button", { class: "btn secondary", type: "button",
      "aria-label": `阅读：${lesson.title}` }, "阅读");
    open.addEventListener("click", () => openLesson(lesson.id).catch((e) => showLessonError($("#lessons-error"), e)));
    show(open, lesson.unlocked);
    return el("li", { "data-id": lesson.id, "data-unlocked": String(lesson.unlocked),
      "data-current": String(reading?.id === lesson.id) },
    el("span", { class: "lesson-name" },
      el("strong", {}, `${i + 1}. ${lesson.title}`), badge, mediaTag(lesson.id), " ", when),
    open);
  }));
  if (reading) renderNeighbours();
  tickCountdowns();
}

/** "2天3小时" / "3小时12分" / "45秒" until `target` on the server's clock. */
export function untilText(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  if (days) return `${days}天${hours}小时`;
  if (hours) return `${hours}小时${minutes}分`;
  if (minutes) return `${minutes}分${seconds % 60}秒`;
  return `${seconds}秒`;
}

function tickCountdowns() {
  let due = null;
  for (const node of document.querySelectorAll("#lessons .countdown")) {
    const li = node.closest("li");
    if (li.dataset.unlocked === "true") {
      node.textContent = "";
      continue;
    }
    const at = node.dataset.unlocksAt;
    if (!at) {
      node.textContent = "完成上一课后解锁";
      continue;
    }
    const left = new Date(at).getTime() - serverNow();
    if (left <= 0 && !askedAt.has(at)) due = at;
    node.textContent = `${formatTime(at)} 解锁 · 还有 ${untilText(left)}`;
  }
  // Past the time on our clock: ask the server (the push may also be on its way).
  if (due) {
    askedAt.add(due);
    loadLessons().catch(() => {});
  }
}

setInterval(tickCountdowns, 1000);

async function personal({ type, data }) {
  if (type !== "lesson_unlocked" || data.course_id !== courseId) return;
  if (courseId && course && !course.enrolled && course.author_id !== me.id) return;
  try {
    if (devMode) await readServerClock().catch(() => {});
    await loadLessons();
    const lesson = lessons.find((l) => l.id === data.lesson_id);
    $("#unlock-note").textContent = `新课时已解锁：${lesson ? lesson.title : ""}`;
    show($("#unlock-note"), true);
  } catch (error) {
    showError($("#lessons-error"), error);
  }
}

// -- reading ---------------------------------------------------------------------------------------

/** A lesson that cannot be opened, said in words (a link from a notification may be old). */
function showLessonError(region, error) {
  showError(region, error);
  if (error?.code === "lesson_locked") region.textContent = "该课时还未解锁";
  if (error?.code === "lesson_not_found") region.textContent = "该课时已下架或不存在";
}

const lessonPath = (lessonId) => coursePath(`/lessons/${encodeURIComponent(lessonId)}`);

async function openLesson(lessonId) {
  showError($("#reader-error"), null);
  const { lesson } = await kpay.get(lessonPath(lessonId));
  if (player) player.destroy();
  reading = lesson;
  lastLessonId = lesson.id;
  const url = new URL(location.href);
  url.searchParams.set("lesson", lesson.id);
  history.replaceState(null, "", url);
  $("#reader-title").textContent = lesson.title;
  player = mountPlayer($("#reader-player"), lesson, {
    kpay, me, path: lessonPath(lesson.id),
    refetch: async () => (await kpay.get(lessonPath(lesson.id))).lesson,
  });
  $("#reader > .watermark")?.remove();
  $("#reader").append(watermark(me));
  // body_html is rendered from Markdown and sanitised on the server when the author saves
  // it (nh3: no <script>/<style>/<iframe>, no on* attributes, only http/https/mailto
  // links), so inserting it as HTML is safe; nothing else on this page is ever HTML.
  $("#reader-body").innerHTML = lesson.body_html || "";
  // A URL typed by hand before uploads existed: still offered as a link.
  show($("#reader-media"), Boolean(lesson.media_url) && !player);
  if (lesson.media_url) $("#reader-media-link").href = lesson.media_url;
  renderReaderDone();
  renderLessons();
  renderContinue();
  show($("#reader"), true);
  $("#reader").scrollIntoView({ block: "start" });
}

/** 上一课 / 下一课: the neighbours in the list, usable when they are open. */
function neighbours() {
  const index = lessons.findIndex((lesson) => lesson.id === reading?.id);
  return [lessons[index - 1] || null, index >= 0 ? lessons[index + 1] || null : null];
}

function renderNeighbours() {
  const [prev, next] = neighbours();
  for (const [button, lesson, word] of [[$("#reader-prev"), prev, "上一课"], [$("#reader-next"), next, "下一课"]]) {
    button.disabled = !lesson || !lesson.unlocked;
    button.textContent = lesson && !lesson.unlocked ? `${word}（未解锁）` : word;
    button.setAttribute("aria-label", lesson ? `${word}：${lesson.title}` : `${word}：没有了`);
  }
}

for (const [id, pick] of [["#reader-prev", 0], ["#reader-next", 1]]) {
  $(id).addEventListener("click", () => {
    const lesson = neighbours()[pick];
    if (lesson?.unlocked) openLesson(lesson.id).catch((e) => showError($("#reader-error"), e));
  });
}

function renderReaderDone() {
  const author = course.author_id === me.id;
  show($("#reader-done"), Boolean(reading?.completed));
  show($("#complete"), !author && !reading?.completed);
}

$("#complete").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
  if (!reading) return;
  try {
    const { progress } = await kpay.post(coursePath(`/lessons/${encodeURIComponent(reading.id)}/complete`));
    reading.completed = true;
    renderReaderDone();
    renderProgress(progress);
    lessons = progress.lessons;
    renderLessons();
  } catch (error) {
    showError($("#reader-error"), error);
  }
}, "提交中…"));

$("#reader-close").addEventListener("click", () => {
  reading = null;
  if (player) player.destroy();
  player = null;
  const url = new URL(location.href);
  url.searchParams.delete("lesson");
  history.replaceState(null, "", url);
  renderLessons();
  show($("#reader"), false);
  $("#lessons-card").scrollIntoView({ block: "start" });
});

start();
