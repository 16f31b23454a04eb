// Uploads of images, audio and video in resumable chunks, and voice recording
// (docs/media.md). No framework, no build step: an ES module like the rest.
//
//   import { uploadFile, startRecording, mediaErrorText } from "/static/js/media.js";
//   const media = await uploadFile(kpay, file, { kind: "image", purpose: "cover",
//                                                onProgress: (sent, total) => ... });
//   media.url  // a public image's card URL

import { ApiError, errorFromEnvelope } from "./errors.js";

/** How often one chunk is tried before the upload gives up, and the first wait (ms). */
export const CHUNK_TRIES = 5;
const FIRST_WAIT_MS = 500;

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(aborted());
    }, { once: true });
  });
}

function aborted() {
  return new ApiError(0, "upload_aborted", "the upload was cancelled");
}

/** Errors a chunk is tried again after: the network, the server's 5xx, 429. */
function retriable(error) {
  return error.status === 0 || error.status >= 500 || error.status === 429;
}

async function sendChunk(kpay, uploadId, blob, start, total, signal) {
  const end = start + blob.size - 1;
  const headers = {
    Accept: "application/json",
    "Content-Type": "application/octet-stream",
    "Content-Range": `bytes ${start}-${end}/${total}`,
  };
  if (kpay.token) headers.Authorization = `Bearer ${kpay.token}`;
  let response;
  try {
    response = await fetch(`${kpay.base}/api/v1/media/uploads/${encodeURIComponent(uploadId)}`,
      { method: "PUT", headers, body: blob, signal });
  } catch (cause) {
    if (signal?.aborted) throw aborted();
    throw new ApiError(0, "network_error", String(cause?.message || cause));
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) throw errorFromEnvelope(response.status, parsed);
  return parsed;
}

/**
 * Upload `file` (a File or Blob) in chunks; resolves to MEDIA
 * ({id, kind, purpose, content_type, size, width?, height?, duration_seconds?, url?}).
 * A failed chunk is tried again with growing waits; after a network error the server's
 * offset is asked first, so the upload resumes where the server stopped.
 * `onProgress(sentBytes, totalBytes)` is called as chunks arrive; `signal` cancels.
 */
export async function uploadFile(kpay, file, { kind, purpose, onProgress, signal } = {}) {
  const total = file.size;
  const started = await kpay.post("/api/v1/media/uploads",
    { kind, purpose, size: total, filename: (file.name || "").slice(0, 200) || undefined });
  let { id, offset, chunk_size: chunkSize } = started.upload;
  onProgress?.(offset, total);
  let tries = 0;
  while (true) {
    if (signal?.aborted) throw aborted();
    if (offset >= total) { // the last chunk is in: its answer was lost, or it is processed
      const media = await completed(kpay, id, signal);
      onProgress?.(total, total);
      return media;
    }
    const chunk = file.slice(offset, Math.min(offset + chunkSize, total));
    try {
      const result = await sendChunk(kpay, id, chunk, offset, total, signal);
      tries = 0;
      if (result.media) {
        onProgress?.(total, total);
        return result.media;
      }
      offset = result.upload.offset;
      onProgress?.(offset, total);
    } catch (error) {
      if (error.code === "offset_mismatch" && Number.isSafeInteger(error.details.offset)) {
        offset = error.details.offset; // the server has more (or less) than we thought
        continue;
      }
      tries += 1;
      if (!retriable(error) || tries >= CHUNK_TRIES) throw error;
      await sleep(FIRST_WAIT_MS * 2 ** (tries - 1), signal);
      offset = await serverOffset(kpay, id, offset);
    }
  }
}

/** Where the server's copy of an upload ends (`Infinity`: complete, or being
 * completed; `fallback` while the server cannot be reached). */
async function serverOffset(kpay, uploadId, fallback) {
  try {
    const state = await kpay.get(`/api/v1/media/uploads/${encodeURIComponent(uploadId)}`);
    return state.media ? Infinity : state.upload.offset;
  } catch {
    return fallback; // still offline: try the same chunk again
  }
}

/** The MEDIA of an upload whose last chunk arrived (its answer may have been lost, or
 * the server is still processing it): asked again every second, for up to two minutes. */
async function completed(kpay, uploadId, signal) {
  for (let attempt = 0; attempt < 120; attempt += 1) {
    try {
      const state = await kpay.get(`/api/v1/media/uploads/${encodeURIComponent(uploadId)}`);
      if (state.media) return state.media;
      if (!["open", "processing"].includes(state.upload.status)) {
        throw new ApiError(409, "upload_closed", `upload ${state.upload.status}`);
      }
    } catch (error) {
      if (!retriable(error)) throw error;
    }
    await sleep(1000, signal);
  }
  throw new ApiError(0, "timeout", "the upload was not completed in time");
}

/** The audio type this browser records: WebM/Opus (Android, desktop) or MP4 (iOS). */
export function recordingType() {
  const Recorder = globalThis.MediaRecorder;
  if (!Recorder) return null;
  for (const type of ["audio/webm;codecs=opus", "audio/webm", "audio/mp4"]) {
    if (!Recorder.isTypeSupported || Recorder.isTypeSupported(type)) return type;
  }
  return "";
}

/**
 * Start recording from the microphone. Resolves to {stop(): Promise<Blob>, cancel()}
 * once recording runs; rejects (ApiError "recording_unavailable") when the browser
 * cannot record or the user refused the microphone.
 */
export async function startRecording() {
  const type = recordingType();
  if (type === null || !navigator.mediaDevices?.getUserMedia) {
    throw new ApiError(0, "recording_unavailable", "this browser cannot record audio");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (cause) {
    throw new ApiError(0, "recording_unavailable", String(cause?.message || cause));
  }
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const parts = [];
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data?.size) parts.push(event.data);
  });
  const release = () => stream.getTracks().forEach((track) => track.stop());
  recorder.start(1000);
  return {
    stop() {
      return new Promise((resolve) => {
        recorder.addEventListener("stop", () => {
          release();
          resolve(new Blob(parts, { type: recorder.mimeType || type || "audio/webm" }));
        }, { once: true });
        recorder.stop();
      });
    },
    cancel() {
      if (recorder.state !== "inactive") recorder.stop();
      release();
    },
  };
}

const MEDIA_TEXT = {
  invalid_media: (d) => (d.kind === "image" ? "文件不是可用的图片（支持 JPG、PNG、WebP、GIF）"
    : d.kind === "audio" ? "文件不是可用的音频（支持 MP3、M4A、WebM、OGG、WAV、AAC）"
    : d.kind === "video" ? "文件不是可用的视频（支持 MP4、WebM）" : "文件格式不正确或已不可用"),
  media_too_large: (d) => `文件太大，最大 ${formatBytes(d.limit)}`,
  quota_exceeded: (d) => `存储空间不足：已用 ${formatBytes(d.used)}，上限 ${formatBytes(d.quota)}`,
  upload_closed: () => "上传已失效，请重新选择文件",
  upload_not_found: () => "上传已失效，请重新选择文件",
  upload_aborted: () => "已取消上传",
  recording_unavailable: () => "无法录音：请允许使用麦克风，或换用其他浏览器",
  media_taken_down: () => "该内容已被下架",
  media_not_found: () => "文件不存在",
  url_expired: () => "链接已过期，请刷新页面",
  no_access: () => "购买后才能收听或观看",
  wrong_user: () => "该链接属于其他用户，请刷新页面",
};

/** "1.5 MB" from bytes ("" when not a number). */
export function formatBytes(bytes) {
  if (!Number.isSafeInteger(bytes)) return "";
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

/** The Chinese message of a media error, or null when it is not one (ui.js errorText). */
export function mediaErrorText(error) {
  if (error?.code === "too_many_open" && error.details?.what === "media_uploads") {
    return "正在上传的文件太多，请等当前上传完成";
  }
  const text = Object.hasOwn(MEDIA_TEXT, error?.code || "") ? MEDIA_TEXT[error.code] : null;
  return text ? text(error.details || {}) : null;
}

/**
 * A file picker that uploads what is chosen: returns {input, element}. `element` is a
 * <label> holding a hidden file input, `text` and a progress bar; `onDone(MEDIA)` is
 * called when the upload completed, `onError(error)` when it failed (show it with
 * ui.js showError).
 */
export function uploadButton(kpay, { kind, purpose, text = "选择文件", accept, onDone,
  onError } = {}) {
  const label = document.createElement("label");
  label.className = "upload-button";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = accept || { image: "image/*", audio: "audio/*", video: "video/*" }[kind] || "";
  input.className = "visually-hidden";
  const caption = document.createElement("span");
  caption.textContent = text;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.hidden = true;
  label.append(input, caption, bar);
  input.addEventListener("change", async () => {
    const file = input.files?.[0];
    if (!file) return;
    input.disabled = true;
    bar.hidden = false;
    caption.textContent = "上传中…";
    try {
      const media = await uploadFile(kpay, file, {
        kind, purpose,
        onProgress: (sent, total) => { bar.value = total ? Math.round((sent / total) * 100) : 0; },
      });
      caption.textContent = "已上传 · 点此更换";
      onDone?.(media);
    } catch (error) {
      caption.textContent = text;
      onError?.(error);
    } finally {
      input.disabled = false;
      input.value = "";
      bar.hidden = true;
    }
  });
  return { input, element: label };
}
