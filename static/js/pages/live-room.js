// What the student room page (room.js) and the console's rooms section (console-rooms.js)
// share about a live room: the model built from the room's events (REST replay and the
// socket deliver the same frames, {seq, type, data}), the replay pager, the question order
// and how a message or a question is drawn. Plugin contract: docs/live_qa.md.

import { formatFen } from "../money.js";
import { el, formatTime } from "../ui.js";
import { voicePlayer } from "./voice-answer.js";

export const ROOM_STATE_TEXT = { scheduled: "未开始", live: "直播中", ended: "已结束" };

export const QUESTION_STATUS_TEXT = {
  pending: "待支付",
  open: "待回答",
  answered: "已回答",
  refunding: "退款中",
  refunded: "已退款",
  closed: "已关闭",
};

// A question only moves forward; an older copy (a replayed "question" event) never
// takes a newer status back.
const STATUS_RANK = { pending: 0, open: 1, refunding: 2, answered: 3, refunded: 3, closed: 3 };

const REPLAY_PAGE = 200;

export const roomPath = (roomId, rest = "") => `/api/v1/rooms/${encodeURIComponent(roomId)}${rest}`;

/** Page GET /rooms/{id}/messages after `since` to the end, oldest first, handing each
 * event to `onEvent`. Resolves with the seq to resume the socket from. */
export async function replay(kpay, roomId, since, onEvent) {
  let cursor = since;
  for (;;) {
    const page = await kpay.get(roomPath(roomId, `/messages?since=${cursor}&limit=${REPLAY_PAGE}`));
    for (const event of page.messages) onEvent(event);
    cursor = page.next_since;
    if (!page.more) return cursor;
  }
}

/** The queue order of the plugin: bounty high to low, then oldest first. */
export function queueOrder(a, b) {
  if (a.bounty !== b.bounty) return b.bounty - a.bounty;
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A room as its events tell it. `apply(event)` returns the kind of change ("feed",
 * "questions", "state", "presence", "members") or null for a repeat or an unknown type. */
export class RoomModel {
  constructor(room) {
    this.room = room;
    this.messages = new Map(); // seq -> message data ({removed: true} once removed)
    this.questions = new Map(); // id -> question
    this.muted = new Set();
    this.removed = new Set();
    this.presence = null;
    this.lastSeq = 0;
    this._seen = new Set();
  }

  apply({ seq, type, data }) {
    if (Number.isSafeInteger(seq)) {
      if (this._seen.has(seq)) return null;
      this._seen.add(seq);
      if (seq > this.lastSeq) this.lastSeq = seq;
    }
    switch (type) {
      case "message":
        this.messages.set(seq, data);
        return "feed";
      case "message_removed": {
        const message = this.messages.get(data.seq);
        this.messages.set(data.seq, { removed: true, from: message?.from, at: message?.at });
        return "feed";
      }
      case "question":
        this.upsertQuestion(data);
        return "questions";
      case "answer":
        this.upsertQuestion(data.question);
        return "questions";
      case "upvote": {
        const question = this.questions.get(data.question_id);
        if (question) question.upvotes = Math.max(question.upvotes, data.upvotes);
        return "questions";
      }
      case "room_state":
        this.room = { ...this.room, state: data.state };
        return "state";
      case "presence":
        this.presence = data.count;
        return "presence";
      case "user_muted":
        if (data.muted) this.muted.add(data.user_id);
        else this.muted.delete(data.user_id);
        return "members";
      case "user_removed":
        this.removed.add(data.user_id);
        return "members";
      default:
        return null;
    }
  }

  upsertQuestion(question) {
    if (!question) return;
    const known = this.questions.get(question.id);
    if (known && (STATUS_RANK[known.status] ?? 0) > (STATUS_RANK[question.status] ?? 0)) {
      known.upvotes = Math.max(known.upvotes, question.upvotes);
      return;
    }
    if (known) question = { ...question, upvotes: Math.max(known.upvotes, question.upvotes) };
    this.questions.set(question.id, question);
  }

  /** Questions with one of `statuses`, in queue order. */
  queue(statuses = null) {
    const wanted = statuses ? new Set(statuses) : null;
    return [...this.questions.values()]
      .filter((q) => !wanted || wanted.has(q.status))
      .sort(queueOrder);
  }

  /** Messages in seq order: [[seq, data], ...]. */
  feed() {
    return [...this.messages.entries()].sort((a, b) => a[0] - b[0]);
  }
}

/** Who said it, for people: "我", else the nickname (people.js `names`), else 主持人 or
 * 学员 (never an id). */
export function speaker(userId, { hostId, meId, names }) {
  if (userId === meId) return "我";
  return names?.name(userId, "") || (userId === hostId ? "主持人" : "学员");
}

/** The speaker with their face (people.js `badge`): `span.person`. */
export function speakerBadge(userId, people, size = 24) {
  const label = speaker(userId, people);
  return people.names ? people.names.badge(userId, { size, label }) : el("strong", {}, label);
}

/** The body of a message: text, an image or an audio player; a removed one says so. */
export function messageBody(data) {
  if (data.removed) return el("p", { class: "msg-removed" }, "该消息已被主持人删除");
  if (data.image_url) {
    return el("a", { href: data.image_url, target: "_blank", rel: "noopener", "aria-label": "查看主持人发送的图片" },
      el("img", { class: "msg-image", src: data.image_url, alt: "主持人发送的图片", loading: "lazy" }));
  }
  if (data.audio_url) {
    const label = data.duration ? `语音 ${data.duration} 秒` : "语音";
    return el("div", { class: "msg-audio" },
      el("audio", { controls: true, preload: "none", src: data.audio_url, "aria-label": label }),
      el("span", { class: "muted small" }, label));
  }
  return el("p", { class: "msg-text" }, data.text ?? "");
}

/** One feed line: `li.msg[data-seq]` with who, when and the body; `extra` goes at the end. */
export function messageItem(seq, data, people, extra = null) {
  const host = data.from === people.hostId;
  return el("li", { class: host ? "msg host" : "msg", "data-seq": seq },
    el("p", { class: "msg-meta small" },
      speakerBadge(data.from, people, 22),
      data.at ? el("span", { class: "muted" }, ` ${formatTime(data.at)}`) : null),
    messageBody(data), extra);
}

/** The parts of a question shown to everyone: bounty, status, text, asker, answer. */
export function questionParts(question, people, roomState) {
  const status = question.status === "open" && roomState === "ended" ? "未回答"
    : QUESTION_STATUS_TEXT[question.status] || question.status;
  const bounty = question.paid
    ? el("span", { class: "bounty" }, `悬赏 ${formatFen(question.bounty)}`)
    : el("span", { class: "bounty free" }, "免费");
  const parts = [
    el("p", { class: "q-meta small" }, bounty,
      el("span", { class: `q-status ${question.status}` }, status),
      el("span", { class: "muted" }, "同问 ",
        el("span", { class: "q-upvotes" }, String(question.upvotes)))),
    el("p", { class: "q-asker small" }, speakerBadge(question.asker_id, people, 22)),
    el("p", { class: "q-text" }, question.text),
  ];
  if (question.answer) {
    const reply = question.answer;
    parts.push(el("div", { class: "q-answer" },
      el("p", { class: "small" }, el("strong", {}, `${speaker(people.hostId, { ...people, meId: null })}的回答`)),
      reply.text ? el("p", { class: "answer-text" }, reply.text) : null,
      reply.audio_url
        ? el("audio", { controls: true, preload: "none", src: reply.audio_url, "aria-label": "语音回答" })
        : null,
      reply.audio_media_id ? voicePlayer(question) : null));
  }
  return parts;
}
