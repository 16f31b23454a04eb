// Courses (course.html): without ?id= the student's courses and the published ones; with
// ?id=<course> the course, buying it (wallet, or WeChat Pay through the PaymentPanel),
// its lessons with lock badges and countdowns to unlocks_at, reading a lesson, marking it
// completed, and progress. lesson_unlocked on user:<id> updates the list live.

import { People } from "../people.js";
import { KPay, formatFen } from "../kpay.js";
import { PaymentPanel } from "../pay.js";
import { $, bindConnectionBadge, el, errorText, formatTime, show, showError, whileBusy } from "../ui.js";
import { releaseText } from "./console-courses.js";
import { shortfallText } from "./consult-call.js";

const kpay = new KPay();
const socket = kpay.socket();
const params = new URLSearchParams(location.search);
const courseId = params.get("id");
const errorBox = $("#error");
const names = new People(kpay); // the author's nickname and face
const coursePath = (suffix = "") => `/api/v1/courses/${encodeURIComponent(courseId)}${suffix}`;

let me = null;
let course = null;
let lessons = [];
let reading = null; // the lesson open in the reader
let serverOffsetMs = 0; // the server clock minus ours (the dev clock can be ahead)
let devMode = false;
const askedAt = new Set(); // unlocks_at times already refetched for (once each)
let panel = null;

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
  $("#mine-list").replaceChildren(...mine.courses.map(({ course: c, progress }) => el("li", {},
    el("p", {}, el("strong", {}, link(c))),
    el("p", { class: "muted small" }, `已完成 ${progress.completed}/${progress.total}` +
      (progress.next_unlock_at ? ` · 下一课 ${formatTime(progress.next_unlock_at)} 解锁` : "")))));
  show($("#mine-empty"), mine.courses.length === 0);
  $("#catalog-list").replaceChildren(...published.courses.map((c) => el("li", {},
    el("p", { class: "history-head" }, el("strong", {}, link(c)),
      el("span", { class: "price" }, c.price ? formatFen(c.price) : "免费")),
    el("p", { class: "muted small" }, `${c.lessons.length} 课时`))));
  show($("#catalog-empty"), published.courses.length === 0);
  show($("#mine"), true);
  show($("#catalog"), true);
}

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
  $("#course-price").textContent = course.price ? formatFen(course.price) : "免费";
  // description_html is Markdown rendered and then sanitised by the server (nh3: no
  // scripts, no event handlers, only http/https/mailto links), so it may go in as HTML.
  $("#course-description").innerHTML = course.description_html || "";
  show($("#course-description"), Boolean(course.description_html));
  show($("#course"), true);
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
  if (course.author_id !== me.id) await loadProgress();
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
    open.addEventListener("click", () => openLesson(lesson.id).catch((e) => showError($("#lessons-error"), e)));
    show(open, lesson.unlocked);
    return el("li", { "data-id": lesson.id, "data-unlocked": String(lesson.unlocked) },
      el("span", { class: "lesson-name" },
        el("strong", {}, `${i + 1}. ${lesson.title}`), badge, " ", when),
      open);
  }));
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

async function openLesson(lessonId) {
  showError($("#reader-error"), null);
  const { lesson } = await kpay.get(coursePath(`/lessons/${encodeURIComponent(lessonId)}`));
  reading = lesson;
  $("#reader-title").textContent = lesson.title;
  // body_html is rendered from Markdown and sanitised on the server when the author saves
  // it (nh3: no <script>/<style>/<iframe>, no on* attributes, only http/https/mailto
  // links), so inserting it as HTML is safe; nothing else on this page is ever HTML.
  $("#reader-body").innerHTML = lesson.body_html || "";
  show($("#reader-media"), Boolean(lesson.media_url));
  if (lesson.media_url) $("#reader-media-link").href = lesson.media_url;
  renderReaderDone();
  show($("#reader"), true);
  $("#reader").scrollIntoView({ block: "start" });
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
  show($("#reader"), false);
  $("#lessons-card").scrollIntoView({ block: "start" });
});

start();
