// The console's 直播间 section (console.html #panel-rooms): create a room, list mine, run
// one: start, post messages (socket `pub`), the question queue by bounty (live), answer,
// mute / unmute / remove a user, remove a message, end (refunds counted), and the income.
//
// Income: no route exposes a consultant's earnings account yet (GET /api/v1/wallet is the
// spending wallet), so the section adds up what the rooms say: tickets sold x price and
// the bounties of answered questions, before the platform fee.

import { formatFen, parseYuan } from "../money.js";
import { People } from "../people.js";
import { $, el, formatTime, show, showError, whileBusy } from "../ui.js";
import { categoryField, categoryOf } from "../storefront.js";
import {
  ROOM_STATE_TEXT, RoomModel, messageItem, questionParts, replay, roomPath, speaker,
} from "./live-room.js";
import { voiceControls } from "./voice-answer.js";

const POST_LABELS = { text: "发言内容", image_url: "图片地址（http 或 https）", audio_url: "语音地址（http 或 https）" };
const HANDLED = new Set(["answered", "refunding", "refunded"]);

/** Fill the rooms panel. context: {kpay, socket, me} (see console.js). */
export async function mount(panel, { kpay, socket, me }) {
  const q = (selector) => $(selector, panel);
  categoryField(kpay, "room-category").then((field) => field && q("#create-error").before(field));
  let rooms = [];
  let model = null; // the room being run
  let subscription = null; // its channel on the shared socket
  const drafts = new Map(); // question id -> answer typed so far (kept across redraws)
  const recordings = new Map(); // question id -> a voice answer being recorded (voice-answer.js)
  const confirming = new Set(); // "remove:<user>" buttons waiting for a second tap
  const names = new People(kpay); // nicknames and avatars of the askers
  names.remember(me);

  // -- my rooms and income ---------------------------------------------------------------

  async function loadRooms() {
    ({ rooms } = await kpay.get("/api/v1/rooms?host_id=me&limit=100"));
    renderRoomList();
    await loadIncome();
  }

  function renderRoomList() {
    const list = q("#room-list");
    list.replaceChildren(...rooms.map((room) => {
      const button = el("button", { class: "btn secondary", type: "button", "aria-label": `管理：${room.title}` }, "管理");
      button.addEventListener("click", () => openRoom(room.id).catch((e) => showError(q("#manage-error"), e)));
      return el("li", { "data-id": room.id },
        el("span", { class: "room-name" }, el("strong", {}, room.title),
          el("span", { class: "muted small" },
            `${ROOM_STATE_TEXT[room.state] || room.state} · ${formatTime(room.starts_at)} · 门票 ${room.sold} 张`)),
        button);
    }));
    show(q("#rooms-empty"), rooms.length === 0);
    if (!rooms.length) q("#create").open = true;
    const tickets = rooms.reduce((sum, room) => sum + room.sold * room.ticket_price, 0);
    q("#earn-tickets").textContent = formatFen(tickets);
  }

  async function loadIncome() {
    const answered = await Promise.all(rooms.filter((room) => room.answered > 0).map((room) =>
      kpay.get(roomPath(room.id, "/questions?status=answered&limit=500"))));
    const bounties = answered.flatMap((reply) => reply.questions)
      .reduce((sum, question) => sum + question.bounty, 0);
    q("#earn-answers").textContent = formatFen(bounties);
  }

  // -- creating ---------------------------------------------------------------------------

  q("#create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const region = q("#create-error");
    showError(region, null);
    const body = readCreateForm(region);
    if (!body) return;
    await whileBusy(q("#create-submit"), async () => {
      try {
        const { room } = await kpay.post("/api/v1/rooms", body);
        event.target.reset();
        q("#create").open = false;
        await loadRooms();
        await openRoom(room.id);
      } catch (error) {
        showError(region, error);
      }
    }, "创建中…");
  });

  function readCreateForm(region) {
    const fail = (text, input) => {
      region.textContent = text;
      region.dataset.code = "bad_input";
      show(region, true);
      input.focus();
      return null;
    };
    const title = q("#room-title-input").value.trim();
    if (!title) return fail("请填写标题", q("#room-title-input"));
    const ticket = parseYuan(q("#room-ticket").value || "0");
    if (ticket === null) return fail("门票价格不正确（最多两位小数）", q("#room-ticket"));
    const least = parseYuan(q("#room-min-question").value || "0");
    if (least === null) return fail("最低提问悬赏不正确（最多两位小数）", q("#room-min-question"));
    const body = {
      title, description: q("#room-description").value.trim(), ticket_price: ticket,
      question_min_price: least, free_questions: q("#room-free-questions").checked,
      ...categoryOf(q("#room-category")),
    };
    const capacity = q("#room-capacity").value.trim();
    if (capacity) {
      if (!/^\d{1,9}$/.test(capacity) || Number(capacity) < 1) {
        return fail("人数上限须为正整数", q("#room-capacity"));
      }
      body.capacity = Number(capacity);
    }
    const starts = q("#room-starts").value;
    if (starts) {
      const at = new Date(starts); // datetime-local: the consultant's own time zone
      if (Number.isNaN(at.getTime())) return fail("开始时间不正确", q("#room-starts"));
      body.starts_at = at.toISOString();
    }
    return body;
  }

  // -- running a room ----------------------------------------------------------------------

  async function openRoom(roomId) {
    const { room } = await kpay.get(roomPath(roomId));
    model = new RoomModel(room);
    drafts.clear();
    const since = await replay(kpay, roomId, 0, (event) => model.apply(event));
    await loadQuestions();
    for (const id of ["#manage-error", "#post-error", "#queue-error", "#feed-error"]) showError(q(id), null);
    show(q("#manage-done"), false);
    renderAll();
    const opened = model;
    subscription?.unsubscribe();
    subscription = socket.subscribe(`room:${roomId}`, {
      since,
      onEvent: (frame) => {
        if (model !== opened) return;
        const change = opened.apply(frame);
        if (change === "state") renderAll();
        else if (change === "presence") refreshRoom(opened);
        else if (change) renderLists();
      },
      onResync: ({ since }) => catchUp(opened, since)
        .catch((e) => showError(q("#manage-error"), e)),
      onError: (error) => showError(q("#manage-error"), error),
    });
    q("#manage").scrollIntoView({ block: "start" });
  }

  async function loadQuestions() {
    const { questions } = await kpay.get(roomPath(model.room.id, "/questions?status=all&limit=500"));
    for (const question of questions) model.upsertQuestion(question);
  }

  /** Someone came or went: tickets sold may have changed too (no event says so). */
  async function refreshRoom(opened) {
    renderManage();
    try {
      const { room } = await kpay.get(roomPath(opened.room.id));
      if (model !== opened) return;
      model.room = { ...room, state: model.room.state === "ended" ? "ended" : room.state };
      rooms = rooms.map((known) => (known.id === room.id ? room : known));
      renderManage();
      renderRoomList();
    } catch (error) {
      showError(q("#manage-error"), error);
    }
  }

  async function catchUp(opened, since = null) {
    // From where the subscription resumed (events after it may be applied already).
    await replay(kpay, opened.room.id, since ?? opened.lastSeq, (event) => opened.apply(event));
    if (model !== opened) return;
    await loadQuestions();
    ({ room: model.room } = await kpay.get(roomPath(model.room.id)));
    renderAll();
  }

  function renderAll() {
    renderManage();
    renderLists();
  }

  function renderManage() {
    const room = model.room;
    show(q("#manage"), true);
    q("#manage-title").textContent = room.title;
    const state = q("#manage-state");
    state.dataset.state = room.state;
    state.textContent = ROOM_STATE_TEXT[room.state] || room.state;
    q("#manage-presence").textContent =
      model.presence !== null && room.state !== "ended" ? `在线 ${model.presence} 人` : "";
    q("#manage-sold").textContent = `${room.sold} / ${room.capacity}`;
    q("#manage-price").textContent = room.ticket_price ? formatFen(room.ticket_price) : "免费";
    const link = q("#manage-link");
    link.href = `/static/room.html?id=${encodeURIComponent(room.id)}`;
    // Named, not the raw address with the room id: the room page has 分享 and the poster.
    link.textContent = "打开学生看到的直播间";
    show(q("#start-room"), room.state === "scheduled");
    show(q("#end-room"), room.state === "live" && q("#end-confirm").hidden);
    if (room.state !== "live") show(q("#end-confirm"), false);
    show(q("#post"), room.state === "live");
    show(q("#queue-card"), room.state === "live");
    show(q("#host-feed-card"), true);
  }

  const people = () => ({ hostId: me.id, meId: me.id, names });

  function renderLists() {
    names.load(model.queue().map((question) => question.asker_id)).then((learnt) => {
      if (learnt && model) renderLists();
    });
    const focused = document.activeElement;
    const focusId = focused && panel.contains(focused) ? focused.id : null;
    const caret = focused?.selectionStart;
    renderQueue();
    renderFeed();
    const handled = model.queue([...HANDLED]);
    q("#answered").replaceChildren(...handled.map((question) =>
      el("li", { class: "question", "data-id": question.id, "data-status": question.status },
        ...questionParts(question, people(), model.room.state))));
    show(q("#answered-card"), handled.length > 0);
    if (focusId) {
      const again = document.getElementById(focusId);
      again?.focus();
      if (again && caret !== undefined && caret !== null && "setSelectionRange" in again) {
        again.setSelectionRange(caret, caret);
      }
    }
  }

  function renderQueue() {
    const open = model.queue(["open"]);
    const live = model.room.state === "live";
    q("#queue").replaceChildren(...open.map((question) => {
      const item = el("li", { class: "question", "data-id": question.id, "data-status": "open" },
        ...questionParts(question, people(), model.room.state));
      if (live) item.append(answerForm(question));
      if (question.asker_id !== me.id) item.append(memberActions(question.asker_id));
      return item;
    }));
    show(q("#queue-empty"), open.length === 0);
  }

  function answerForm(question) {
    const id = `answer-${question.id}`;
    const box = el("textarea", { id, rows: 2, maxlength: 20000, placeholder: "输入回答" });
    box.value = drafts.get(question.id) || "";
    box.addEventListener("input", () => drafts.set(question.id, box.value));
    const button = el("button", { class: "btn", type: "submit" }, "回答");
    const form = el("form", { class: "answer-form", novalidate: true },
      el("label", { for: id, class: "small" }, `回答 ${speaker(question.asker_id, people())} 的提问`),
      box, button, voiceControls(kpay, question, {
        recordings,
        send: (mediaId) => sendAnswer(question, { audio_media_id: mediaId }),
        onError: (error) => showError(q("#queue-error"), error),
        redraw: renderLists,
      }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = box.value.trim();
      if (!text) {
        q("#queue-error").textContent = "请先输入回答内容";
        show(q("#queue-error"), true);
        box.focus();
        return;
      }
      showError(q("#queue-error"), null);
      await whileBusy(button, async () => {
        try {
          await sendAnswer(question, { text });
        } catch (error) {
          showError(q("#queue-error"), error);
        }
      }, "提交中…");
    });
    return form;
  }

  /** Answer with text or a recording ({audio_media_id}); the queue moves on. */
  async function sendAnswer(question, body) {
    const reply = await kpay.post(
      roomPath(model.room.id, `/questions/${encodeURIComponent(question.id)}/answer`), body);
    drafts.delete(question.id);
    model.upsertQuestion(reply.question);
    renderLists();
    await loadRooms();
  }

  /** Mute / unmute and remove buttons for a student of the room. */
  function memberActions(userId) {
    if (model.room.state !== "live") return null;
    if (model.removed.has(userId)) {
      return el("p", { class: "muted small" }, `${speaker(userId, people())} 已被移出`);
    }
    const muted = model.muted.has(userId);
    const mute = el("button", { class: "btn plain", type: "button" }, muted ? "解除禁言" : "禁言");
    mute.addEventListener("click", () => moderate(mute, async () => {
      const reply = await kpay.post(roomPath(model.room.id,
        `/members/${encodeURIComponent(userId)}/${muted ? "unmute" : "mute"}`));
      if (reply.muted) model.muted.add(userId);
      else model.muted.delete(userId);
    }));
    const key = `remove:${userId}`;
    const remove = el("button", { class: "btn plain", type: "button" },
      confirming.has(key) ? "确认移出？" : "移出");
    remove.addEventListener("click", () => {
      if (!confirming.has(key)) {
        confirming.add(key); // a second tap removes: no accidental removals
        renderLists();
        return;
      }
      confirming.delete(key);
      moderate(remove, async () => {
        await kpay.request("DELETE", roomPath(model.room.id, `/members/${encodeURIComponent(userId)}`));
        model.removed.add(userId);
      });
    });
    return el("div", { class: "actions", role: "group", "aria-label": `管理学员 ${speaker(userId, people())}` }, mute, remove);
  }

  async function moderate(button, task) {
    showError(q("#queue-error"), null);
    await whileBusy(button, async () => {
      try {
        await task();
      } catch (error) {
        showError(q("#queue-error"), error);
      }
    });
    renderLists();
  }

  function renderFeed() {
    const feed = model.feed();
    const live = model.room.state === "live";
    q("#host-feed").replaceChildren(...feed.map(([seq, data]) => {
      let extra = null;
      if (live && !data.removed) {
        const remove = el("button", { class: "btn plain", type: "button", "aria-label": `删除第 ${seq} 条消息` }, "删除");
        remove.addEventListener("click", () => removeMessage(remove, seq));
        extra = el("div", { class: "actions" }, remove);
      }
      return messageItem(seq, data, people(), extra);
    }));
    show(q("#host-feed-empty"), feed.length === 0);
  }

  async function removeMessage(button, seq) {
    showError(q("#feed-error"), null);
    await whileBusy(button, async () => {
      try {
        await kpay.request("DELETE", roomPath(model.room.id, `/messages/${seq}`));
      } catch (error) {
        if (error.code !== "already_removed") showError(q("#feed-error"), error);
      }
    });
  }

  // -- start, post, end ---------------------------------------------------------------------

  q("#start-room").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
    showError(q("#manage-error"), null);
    try {
      ({ room: model.room } = await kpay.post(roomPath(model.room.id, "/start")));
      renderAll();
      await loadRooms();
    } catch (error) {
      showError(q("#manage-error"), error);
    }
  }, "正在开始…"));

  q("#end-room").addEventListener("click", () => {
    show(q("#end-room"), false);
    show(q("#end-confirm"), true);
    q("#end-confirm-yes").focus();
  });
  q("#end-confirm-no").addEventListener("click", () => {
    show(q("#end-confirm"), false);
    renderManage();
    q("#end-room").focus();
  });
  q("#end-confirm-yes").addEventListener("click", (event) => whileBusy(event.currentTarget, async () => {
    showError(q("#manage-error"), null);
    try {
      const reply = await kpay.post(roomPath(model.room.id, "/end"));
      model.room = reply.room;
      show(q("#end-confirm"), false);
      const done = q("#manage-done");
      done.textContent = reply.refunded
        ? `直播已结束，${reply.refunded} 个未回答的付费提问已全额退款`
        : "直播已结束，没有需要退款的提问";
      show(done, true);
      await loadQuestions();
      renderAll();
      await loadRooms();
    } catch (error) {
      showError(q("#manage-error"), error);
    }
  }, "正在结束…"));

  q("#post-kind").addEventListener("change", () => {
    q("#post-text-label").textContent = POST_LABELS[q("#post-kind").value];
  });

  q("#post-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const region = q("#post-error");
    showError(region, null);
    const kind = q("#post-kind").value;
    const value = q("#post-text").value.trim();
    if (!value || (kind !== "text" && !/^https?:\/\/\S+$/.test(value))) {
      region.textContent = kind === "text" ? "请输入要发送的内容" : "请输入以 http:// 或 https:// 开头的地址";
      region.dataset.code = "bad_input";
      show(region, true);
      q("#post-text").focus();
      return;
    }
    await whileBusy(q("#post-submit"), async () => {
      try {
        await socket.publish(`room:${model.room.id}`, "message", { [kind]: value });
        q("#post-text").value = "";
      } catch (error) {
        showError(region, error);
      }
    }, "发送中…");
  });

  await loadRooms();
}
