// The student's live room (room.html?id=<room>): buy a ticket (wallet, or WeChat Pay
// through the PaymentPanel), follow the host's messages live, ask free or paid questions,
// 同问, see answers, presence and the room's state; the replay once it has ended.
// Events come from the REST replay first, then the socket resumes from its last seq;
// on a resync (events possibly missed) the page pages the replay from where it was.

import { KPay, formatFen, parseYuan } from "../kpay.js";
import { PaymentPanel, walletUrl } from "../pay.js";
import { mountShareBar } from "../share.js";
import { $, bindConnectionBadge, el, formatTime, show, showError, whileBusy } from "../ui.js";
import {
  ROOM_STATE_TEXT, RoomModel, messageItem, questionParts, replay, roomPath,
} from "./live-room.js";
import { People } from "../people.js";

const kpay = new KPay();
const socket = kpay.socket();
const params = new URLSearchParams(location.search);
const roomId = params.get("id");
const errorBox = $("#error");

let me = null;
let model = null;
let panel = null;
let entered = false;
let removed = false;
let muted = false;
let isHost = false; // the host watches here too, and runs the room in the console
let dropped = false; // the socket lost its connection since the room was entered
const feedNodes = new Map(); // seq -> li, so a live message is added without redrawing
const upvoted = new Set(); // question ids this user upvoted here (the API does not say)
const names = new People(kpay); // nicknames and avatars of the host and the askers

bindConnectionBadge($("#connection"), socket);
socket.on("state", ({ state }) => {
  if (state === "reconnecting" || state === "offline") dropped = true;
});
socket.on("unauthorized", ({ reason }) => {
  kpay.logout(reason || "unauthorized"); // the home page says why
  location.href = "/";
});

async function start() {
  try {
    if (!roomId) {
      show($("#loading"), false);
      errorBox.textContent = "缺少直播间编号，请从首页进入直播间";
      show(errorBox, true);
      return;
    }
    const [user, dev] = await Promise.all([kpay.me(), kpay.devEnabled()]);
    show($("#loading"), false);
    if (!user) {
      show($("#need-login"), true);
      return;
    }
    me = user;
    names.remember(me);
    panel = new PaymentPanel($("#payment"), { kpay, dev, onPaid: paid });
    // Refunds of this user's questions are told on their own channel.
    socket.subscribe(`user:${me.id}`, { onEvent: personal });
    socket.connect();
    await loadRoom();
    const returning = params.get("order"); // back from WeChat H5 pay
    if (returning) await panel.resume(returning);
  } catch (error) {
    show($("#loading"), false);
    showError(errorBox, error);
  }
}

async function loadRoom() {
  const { room, me: access } = await kpay.get(roomPath(roomId));
  if (!model) model = new RoomModel(room);
  model.room = room;
  muted = access.muted;
  isHost = access.host;
  show($("#host-notice"), isHost);
  await names.load([room.host_id]);
  renderInfo();
  if (access.host || access.ticket === "active") await enter();
  else showJoin(access);
}

const people = () => ({ hostId: model.room.host_id, meId: me.id, names });

/** Look up the people of `ids` not known yet, and draw again once they are. */
function learn(ids) {
  names.load(ids).then((learnt) => {
    if (!learnt) return;
    for (const node of feedNodes.values()) node.dataset.removed = "stale"; // redraw each
    renderFeed();
    renderQuestions();
  });
}

// -- ticket ------------------------------------------------------------------------------

function showJoin(access) {
  const room = model.room;
  show($("#join"), true);
  $("#ticket-price").textContent = room.ticket_price ? formatFen(room.ticket_price) : "免费";
  let blocked = null;
  if (access.ticket === "revoked") blocked = "你已被主持人移出直播间，无法再次进入。";
  else if (access.ticket === "refunded") blocked = "你的门票已退款。";
  else if (room.state === "ended") blocked = "直播已结束，不再出售门票。";
  if (access.ticket === "revoked") setRemoved();
  $("#join-hint").textContent = blocked || "购票后可收看直播、提问和回放。";
  show($("#buy-wallet"), !blocked);
  show($("#buy-wechat"), !blocked && room.ticket_price > 0);
  $("#buy-wallet").textContent = room.ticket_price ? "余额支付" : "免费入场";
}

async function buyTicket(button, channels) {
  showError($("#join-error"), null);
  show($("#join-topup"), false);
  await whileBusy(button, async () => {
    try {
      await panel.start({ kind: "live_ticket", room_id: roomId }, channels);
    } catch (error) {
      if (error.code === "ticket_pending" && error.details?.order_id) {
        await panel.resume(error.details.order_id); // an unpaid order: keep paying it
      } else if (error.code === "already_has_ticket") {
        await loadRoom();
      } else {
        problem($("#join-error"), error, $("#join-topup"));
      }
    }
  }, "正在创建订单…");
}

$("#buy-wallet").addEventListener("click", (e) => buyTicket(e.currentTarget, ["wallet"]));
$("#buy-wechat").addEventListener("click", (e) => buyTicket(e.currentTarget, undefined));

/** Show an order error; a 402 also offers the wallet page. */
function problem(region, error, topupLink) {
  if (error.code === "no_channel") {
    region.textContent = "暂无可用的支付方式，请稍后再试";
    region.dataset.code = "no_channel";
    show(region, true);
  } else if (error.code === "bounty_too_low" && Number.isSafeInteger(error.details?.min)) {
    region.textContent = `悬赏至少 ${formatFen(error.details.min)}`;
    region.dataset.code = error.code;
    show(region, true);
  } else {
    showError(region, error);
  }
  show(topupLink, error.code === "insufficient_balance");
}

async function paid(order) {
  if (order.status !== "fulfilled") return; // the ticket is active once fulfilled
  panel.close();
  if (order.kind === "live_ticket") {
    await loadRoom().catch((error) => showError(errorBox, error));
  } else if (order.kind === "live_question") {
    asked("提问已发布，等待主持人回答");
  }
}

// -- in the room ---------------------------------------------------------------------

async function enter() {
  if (entered) return;
  entered = true;
  show($("#join"), false);
  show($("#feed-card"), true);
  show($("#questions-card"), true);
  dropped = false;
  const since = await replay(kpay, roomId, 0, (event) => model.apply(event));
  await loadQuestions();
  renderAll();
  socket.subscribe(`room:${roomId}`, {
    since,
    onEvent: live,
    onResync: ({ since }) => catchUp(since).catch((error) => showError(errorBox, error)),
    onEnd: ({ reason }) => {
      if (reason === "removed_by_host") setRemoved();
    },
    onError: (error) => {
      if (error.code === "forbidden") setRemoved();
      else showError(errorBox, error);
    },
  });
}

async function loadQuestions() {
  const { questions } = await kpay.get(roomPath(roomId, "/questions?status=all&limit=500"));
  for (const question of questions) model.upsertQuestion(question);
}

function live(frame) {
  const change = model.apply(frame);
  if (change) render(change);
}

/** Events may have been missed: page the replay from the last seq seen. This also runs
 * when the first subscription cannot resume from the replay's end (seqs of an empty room
 * do not start at 0), so the note is shown only after a real drop. */
async function catchUp(since = null) {
  show($("#resync-note"), dropped);
  try {
    // From where the subscription resumed: events after it may already be applied
    // (the model skips repeats), those before them not.
    await replay(kpay, roomId, since ?? model.lastSeq, (event) => model.apply(event));
    await loadQuestions();
    const { room } = await kpay.get(roomPath(roomId));
    model.room = room;
  } catch (error) {
    if (error.code === "no_ticket") setRemoved();
    else throw error;
  }
  renderAll();
}

function personal(frame) {
  if (frame.type !== "question_refunded" || frame.data.room_id !== roomId) return;
  const notice = frame.data;
  $("#refund-notices").append(el("li", { class: "notice", "data-question": notice.question_id },
    `你的提问「${notice.text}」未获回答，悬赏 ${formatFen(notice.amount)} 已退回钱包。`));
  const question = model?.questions.get(notice.question_id);
  if (question) {
    model.upsertQuestion({ ...question, status: "refunded" });
    renderQuestions();
  }
}

function setRemoved() {
  removed = true;
  show($("#removed-notice"), true);
  renderAsk();
}

// -- drawing -------------------------------------------------------------------------------

function render(change) {
  if (change === "feed") renderFeed();
  else if (change === "questions") renderQuestions();
  else if (change === "presence") renderPresence();
  else if (change === "state") renderAll();
  else if (change === "members") {
    if (model.removed.has(me.id)) setRemoved();
    muted = model.muted.has(me.id);
    renderAsk();
  }
}

function renderAll() {
  if (model.removed.has(me.id)) removed = true;
  renderInfo();
  renderFeed();
  renderQuestions();
  renderPresence();
  renderAsk();
}

function renderInfo() {
  const room = model.room;
  document.title = `${room.title} - kpay`;
  $("#room-title").textContent = room.title;
  const state = $("#room-state");
  state.dataset.state = room.state;
  state.textContent = ROOM_STATE_TEXT[room.state] || room.state;
  $("#room-desc").textContent = room.description || "";
  show($("#room-desc"), Boolean(room.description));
  let when = "";
  if (room.state === "scheduled") when = `开始时间：${formatTime(room.starts_at)}`;
  else if (room.state === "live" && room.started_at) when = `开始于 ${formatTime(room.started_at)}`;
  else if (room.state === "ended") when = "直播已结束，以下为回放";
  $("#room-when").textContent = when;
  $("#room-host").replaceChildren(names.link(room.host_id, { fallback: "主持人", role: "主持人" }));
  $("#feed-title").textContent = room.state === "ended" ? "回放" : "直播内容";
  show($("#room-info"), true);
  for (const link of [$("#join-topup"), $("#ask-topup")]) link.href = walletUrl(); // 返回继续购买
  mountShareBar($("#room-info"), { resource: `room:${room.id}`, card: {
    title: room.title, desc: room.description, imgUrl: room.cover_url,
    link: `/static/room.html?id=${encodeURIComponent(room.id)}` } });
}

function renderPresence() {
  const presence = $("#presence");
  show(presence, model.presence !== null && model.room.state !== "ended");
  if (model.presence !== null) presence.textContent = `在线 ${model.presence} 人`;
}

function renderFeed() {
  const list = $("#feed");
  learn(model.feed().map(([, data]) => data.from));
  for (const [seq, data] of model.feed()) {
    const current = feedNodes.get(seq);
    const removedFlag = String(Boolean(data.removed));
    if (current && current.dataset.removed === removedFlag) continue;
    const node = messageItem(seq, data, people());
    node.dataset.removed = removedFlag;
    if (current) {
      current.replaceWith(node);
    } else {
      const next = [...list.children].find((item) => Number(item.dataset.seq) > seq) || null;
      list.insertBefore(node, next);
    }
    feedNodes.set(seq, node);
  }
  const empty = $("#feed-empty");
  empty.textContent = model.room.state === "scheduled" ? "直播尚未开始" : "主持人还没有发言";
  show(empty, model.messages.size === 0);
}

// Open questions first (queue order), then answered, then the rest.
const GROUP = { open: 0, answered: 1, refunding: 2, refunded: 2 };

function renderQuestions() {
  const focused = document.activeElement?.closest?.("#questions li")?.dataset.id;
  const list = $("#questions");
  const shown = model.queue(Object.keys(GROUP))
    .sort((a, b) => GROUP[a.status] - GROUP[b.status]); // stable: keeps queue order
  learn(shown.map((question) => question.asker_id));
  const canVote = model.room.state === "live" && !removed && !isHost;
  list.replaceChildren(...shown.map((question) => {
    const item = el("li", { class: "question", "data-id": question.id, "data-status": question.status },
      ...questionParts(question, people(), model.room.state));
    if (question.asker_id === me.id) item.classList.add("mine");
    if (canVote && question.status === "open" && question.asker_id !== me.id) {
      const done = upvoted.has(question.id);
      const button = el("button", {
        class: "btn plain upvote", type: "button", "aria-pressed": String(done), disabled: done,
        "aria-label": `同问：${question.text.slice(0, 30)}`,
      }, done ? "已同问" : "同问");
      button.addEventListener("click", () => upvote(button, question.id));
      item.append(button);
    }
    return item;
  }));
  show($("#questions-empty"), shown.length === 0);
  if (focused) list.querySelector(`li[data-id="${CSS.escape(focused)}"] button`)?.focus();
}

async function upvote(button, questionId) {
  showError($("#questions-error"), null);
  button.disabled = true;
  try {
    const { question } = await kpay.post(roomPath(roomId, `/questions/${encodeURIComponent(questionId)}/upvote`));
    upvoted.add(questionId);
    model.upsertQuestion(question);
  } catch (error) {
    if (error.code === "already_upvoted") upvoted.add(questionId);
    else showError($("#questions-error"), error);
  }
  renderQuestions();
}

function renderAsk() {
  const room = model.room;
  show($("#muted-notice"), muted && !removed && room.state !== "ended");
  const open = entered && room.state === "live" && !removed && !muted && !isHost;
  show($("#ask"), open);
  if (!open) return;
  const least = Math.max(1, room.question_min_price);
  show($("#ask-free"), room.free_questions);
  $("#bounty").placeholder = `至少 ${formatFen(least).slice(1)}`;
  $("#bounty-hint").textContent = room.free_questions
    ? `付费提问按悬赏从高到低优先回答，最低 ${formatFen(least)}；也可以免费提问`
    : `付费提问按悬赏从高到低优先回答，最低 ${formatFen(least)}`;
}

// -- asking ------------------------------------------------------------------------------

function asked(text) {
  $("#question-text").value = "";
  $("#bounty").value = "";
  const done = $("#ask-done");
  done.textContent = text;
  show(done, true);
}

$("#ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const how = event.submitter?.value || "wallet";
  const region = $("#ask-error");
  showError(region, null);
  show($("#ask-topup"), false);
  show($("#ask-done"), false);
  const text = $("#question-text").value.trim();
  if (!text) {
    region.textContent = "请先写下你的问题";
    region.dataset.code = "empty_text";
    show(region, true);
    $("#question-text").focus();
    return;
  }
  const buttons = [...event.currentTarget.querySelectorAll("button[type=submit]")];
  if (how === "free") {
    await busy(buttons, async () => {
      try {
        await kpay.post(roomPath(roomId, "/questions"), { text });
        asked("提问已发布");
      } catch (error) {
        problem(region, error, $("#ask-topup"));
      }
    });
    return;
  }
  const least = Math.max(1, model.room.question_min_price);
  const bounty = parseYuan($("#bounty").value);
  if (bounty === null || bounty < least) {
    region.textContent = `请填写悬赏金额，至少 ${formatFen(least)}（最多两位小数）`;
    region.dataset.code = "bad_bounty";
    show(region, true);
    $("#bounty").focus();
    return;
  }
  const item = { kind: "live_question", room_id: roomId, text, bounty };
  await busy(buttons, async () => {
    try {
      await panel.start(item, how === "wallet" ? ["wallet"] : undefined);
    } catch (error) {
      problem(region, error, $("#ask-topup"));
    }
  });
});

/** Every submit button of the form off while one request runs (no double orders). */
async function busy(buttons, task) {
  for (const button of buttons) button.disabled = true;
  try {
    await task();
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

start();
