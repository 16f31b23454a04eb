// What consult.html (student) and the console's 咨询 section (consultant) share: the meter
// of one consultation built from its consult:<id> events, and the voice call over WebRTC
// with the signalling relayed by the server (op pub, types offer / answer / ice).

import { formatFen } from "../money.js";
import { el, errorText, formatTime } from "../ui.js";

export const STATUS_TEXT = {
  requested: "等待咨询师接受…",
  active: "咨询中",
  paused: "已暂停（对方暂时离开）",
  ended: "已结束",
};

export const END_REASON_TEXT = {
  funds_exhausted: "余额已用完",
  max_minutes: "已达到本次咨询的最长时长",
  ended_by_student: "学生结束了咨询",
  ended_by_consultant: "咨询师结束了咨询",
  absent: "一方离开太久，咨询已结束",
  declined: "咨询师婉拒了请求",
  cancelled: "请求已取消",
  expired: "请求超时未被接受",
};

export const OPEN_STATUSES = new Set(["requested", "active", "paused"]);

/** "需要 ¥X，当前余额 ¥Y，还差 ¥Z" for a 402 insufficient_balance. */
export function shortfallText(error) {
  const needed = error?.needed;
  const balance = error?.details?.balance;
  if (!Number.isSafeInteger(needed) || !Number.isSafeInteger(balance)) return "余额不足，请先充值";
  return `余额不足：需要 ${formatFen(needed)}，当前余额 ${formatFen(balance)}，还差 ${formatFen(needed - balance)}`;
}

/** The summary of an ended consultation as definition-list rows. */
export function summaryRows(summary, party) {
  const rows = [
    ["计费分钟", `${summary.billed_minutes} 分钟`],
    ["每分钟", formatFen(summary.rate_per_minute)],
    [party === "consultant" ? "学生支付" : "共计扣费", formatFen(summary.charged)],
  ];
  if (summary.discount > 0) rows.push(["优惠", formatFen(summary.discount)]);
  if (party === "consultant") {
    rows.push(["我的收入", formatFen(summary.consultant_earned)]);
    rows.push(["平台服务费", formatFen(summary.platform_fee)]);
  }
  if (summary.accepted_at) rows.push(["开始", formatTime(summary.accepted_at)]);
  if (summary.ended_at) rows.push(["结束", formatTime(summary.ended_at)]);
  return rows.map(([name, value]) => el("div", {}, el("dt", {}, name), el("dd", {}, value)));
}

/** A call failure in words: server refusals by code, browser errors by their message. */
export function callErrorText(error) {
  if (error?.name === "NotAllowedError" || error?.name === "NotFoundError") {
    return "无法使用麦克风，请检查浏览器权限";
  }
  return `语音通话失败：${error?.status !== undefined ? errorText(error) : error?.message || error}`;
}

/** True when this browser can place a voice call (microphone API and WebRTC). */
export function callSupported() {
  return Boolean(globalThis.RTCPeerConnection && navigator.mediaDevices?.getUserMedia);
}

/**
 * A voice call between the two parties of consult:<id>. The student calls (offer), the
 * consultant answers. `onState(text)` tells the page what to show; `onIncoming()` fires
 * when an offer arrives and the user has not answered yet.
 */
export class VoiceCall {
  constructor({ socket, channel, me, audio, onState = () => {}, onIncoming = () => {} }) {
    this.socket = socket;
    this.channel = channel;
    this.me = me;
    this.audio = audio; // an <audio autoplay> element for the other side
    this.onState = onState;
    this.onIncoming = onIncoming;
    this.peer = null;
    this.stream = null;
    this.pendingOffer = null;
    this.pendingIce = [];
  }

  /** A signalling event of the channel (offer / answer / ice); others are ignored. */
  async handle(frame) {
    const { type, data } = frame;
    if (!["offer", "answer", "ice"].includes(type) || data?.from === this.me) return;
    try {
      if (type === "offer") {
        this.pendingOffer = data;
        this.onIncoming();
      } else if (type === "answer" && this.peer) {
        await this.peer.setRemoteDescription({ type: "answer", sdp: data.sdp });
        await this._flushIce();
      } else if (type === "ice" && data.candidate) {
        if (this.peer?.remoteDescription) await this.peer.addIceCandidate(data.candidate);
        else this.pendingIce.push(data.candidate);
      }
    } catch (error) {
      this.onState(`语音通话出错：${error?.message || error}`);
    }
  }

  /** Start the call (caller side). */
  async call() {
    await this._open();
    const offer = await this.peer.createOffer();
    await this.peer.setLocalDescription(offer);
    await this.socket.publish(this.channel, "offer", { sdp: offer.sdp });
    this.onState("正在呼叫对方…");
  }

  /** Answer the offer that arrived (callee side). */
  async answer() {
    const offer = this.pendingOffer;
    const early = this.pendingIce; // candidates that came with the offer
    if (!offer) return;
    await this._open(); // (starts clean: drops any earlier call and its pending state)
    this.pendingIce = early;
    await this.peer.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    await this._flushIce();
    const answer = await this.peer.createAnswer();
    await this.peer.setLocalDescription(answer);
    await this.socket.publish(this.channel, "answer", { sdp: answer.sdp });
    this.onState("通话已接通");
  }

  hangUp() {
    this.peer?.close();
    this.peer = null;
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
    this.pendingOffer = null;
    this.pendingIce = [];
  }

  async _open() {
    this.hangUp();
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    this.peer = new RTCPeerConnection();
    for (const track of this.stream.getTracks()) this.peer.addTrack(track, this.stream);
    this.peer.addEventListener("icecandidate", (event) => {
      if (!event.candidate) return;
      this.socket.publish(this.channel, "ice", { candidate: event.candidate.toJSON() })
        .catch(() => {}); // a lost candidate only slows the connection down
    });
    this.peer.addEventListener("track", (event) => {
      this.audio.srcObject = event.streams[0];
    });
    this.peer.addEventListener("connectionstatechange", () => {
      const state = this.peer?.connectionState;
      if (state === "connected") this.onState("通话已接通");
      if (state === "failed") this.onState("通话连接失败，请重试");
      // There is no hang-up message in the relay: the other side's close shows up here.
      if (state === "disconnected") this.onState("对方已挂断或网络中断");
    });
  }

  async _flushIce() {
    const waiting = this.pendingIce;
    this.pendingIce = [];
    for (const candidate of waiting) await this.peer.addIceCandidate(candidate);
  }
}
