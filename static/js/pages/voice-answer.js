// Voice answers in live rooms (docs/live_qa.md "Voice answers"): the player members see
// under a question (its signed URL asked for on tap, as it is short-lived), and the host's
// controls in the console: record in the browser (MediaRecorder) or upload a file.

import { KPay } from "../kpay.js";
import { startRecording, uploadButton, uploadFile } from "../media.js";
import { el, showError } from "../ui.js";

let client = null; // the players' own REST client (same origin, same stored token)

/** "1:05" for 65 seconds ("" when unknown). */
export function durationText(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** The player of a question's voice answer: "▶ 语音回答 0:12"; a tap fetches the signed
 * URL (GET /rooms/{id}/questions/{qid}/audio) and plays it. */
export function voicePlayer(question) {
  const length = durationText(question.answer?.duration_seconds);
  const label = length ? `播放语音回答（${length}）` : "播放语音回答";
  const button = el("button", { class: "btn secondary voice-play", type: "button",
    "aria-label": label }, "▶ 语音回答", length ? el("span", { class: "voice-length" }, length) : null);
  const error = el("p", { class: "alert small", role: "alert", hidden: true });
  const box = el("div", { class: "voice-answer", "data-question": question.id }, button, error);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      client ||= new KPay();
      const path = `/api/v1/rooms/${encodeURIComponent(question.room_id)}/questions/`
        + `${encodeURIComponent(question.id)}/audio`;
      const { url } = await client.get(path);
      const audio = el("audio", { controls: true, preload: "auto", src: url, "aria-label": label });
      button.replaceWith(audio);
      audio.play().catch(() => {}); // autoplay may be refused: the controls are there
    } catch (failure) {
      button.disabled = false;
      showError(error, failure);
    }
  });
  return box;
}

/**
 * The host's voice controls for one question: 录音回答 (start, then 停止并发送 / 取消) and
 * 上传音频. `recordings` (question id -> {session, startedAt}) outlives redraws of the
 * queue; `send(mediaId)` posts the answer; `onError(error)` shows a failure.
 */
export function voiceControls(kpay, question, { recordings, send, onError, redraw }) {
  const running = recordings.get(question.id);
  const status = el("span", { class: "muted small voice-status", role: "status" });
  const box = el("div", { class: "voice-controls" });
  const finish = async (blob) => {
    status.textContent = "上传中…";
    const file = new File([blob], `answer.${blob.type.includes("mp4") ? "m4a" : "webm"}`,
      { type: blob.type });
    const media = await uploadFile(kpay, file, { kind: "audio", purpose: "answer" });
    await send(media.id);
  };
  if (running) {
    const tick = () => { status.textContent = `录音中 ${durationText((Date.now() - running.startedAt) / 1000)}`; };
    tick();
    running.timer ||= setInterval(() => {
      const shown = document.querySelector(`.voice-controls[data-question="${CSS.escape(question.id)}"] .voice-status`);
      if (shown) shown.textContent = `录音中 ${durationText((Date.now() - running.startedAt) / 1000)}`;
    }, 1000);
    const stop = el("button", { class: "btn", type: "button" }, "停止并发送");
    const cancel = el("button", { class: "btn plain", type: "button" }, "取消录音");
    const end = () => {
      clearInterval(running.timer);
      recordings.delete(question.id);
    };
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      cancel.disabled = true;
      end();
      try {
        await finish(await running.session.stop());
      } catch (error) {
        onError(error);
        redraw();
      }
    });
    cancel.addEventListener("click", () => {
      running.session.cancel();
      end();
      redraw();
    });
    box.append(status, stop, cancel);
  } else {
    const record = el("button", { class: "btn secondary", type: "button" }, "🎙 录音回答");
    record.addEventListener("click", async () => {
      record.disabled = true;
      try {
        recordings.set(question.id, { session: await startRecording(), startedAt: Date.now() });
      } catch (error) {
        onError(error);
      }
      redraw();
    });
    const upload = uploadButton(kpay, {
      kind: "audio", purpose: "answer", text: "上传音频",
      onDone: (media) => send(media.id).catch(onError), onError,
    });
    box.append(record, upload.element, status);
  }
  box.dataset.question = question.id;
  return box;
}
