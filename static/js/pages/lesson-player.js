// A lesson's audio or video player (course.html): resumes where this reader stopped, saves
// the position every few seconds while playing, on pause and when the page goes away
// (keepalive fetch), and asks for a fresh signed URL when the old one stopped working.
// docs/pages.md "Courses"; the API is docs/course_drip.md "Players that resume".

import { el } from "../ui.js";

const SAVE_EVERY_MS = 5000;
/** Not worth resuming: the first seconds, or the very end (start again instead). */
const RESUME_MIN_SECONDS = 3;
const RESUME_END_MARGIN = 3;
/** Fresh URLs asked for one player, at most: a file that is gone must not loop. */
const MAX_REFRESHES = 3;

/** "03:12" or "1:02:03". */
export function clockText(seconds) {
  const total = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

/** The viewer's watermark: nickname and id, repeated over `box`. A long id keeps its
 * two ends (a cut-off tail alone reads like a misspelt name). */
export function watermark(me, count = 12) {
  const id = String(me.id);
  const shown = id.length <= 12 ? id : `${id.slice(0, 4)}…${id.slice(-6)}`;
  const text = `${me.name || "学员"} · ID ${shown}`;
  return el("div", { class: "watermark", "aria-hidden": "true" },
    ...Array.from({ length: count }, () => el("span", {}, text)));
}

/**
 * Mount the player of `lesson` into `box` (emptied first); null when it has no media.
 * options: {kpay, path (the lesson's API path), me, refetch: () => Promise<lesson>}.
 * Returns {element, save(), destroy()}.
 */
export function mountPlayer(box, lesson, { kpay, path, me, refetch }) {
  box.replaceChildren();
  const kind = lesson.video_url ? "video" : lesson.audio_url ? "audio" : null;
  if (!kind) return null;
  const media = el(kind, { controls: true, preload: "metadata", playsinline: true,
    "aria-label": kind === "video" ? "课时视频" : "课时音频", src: lesson[`${kind}_url`] });
  const hint = el("p", { class: "resume-hint", role: "status", hidden: true });
  const frame = el("div", { class: `player ${kind}` }, media, kind === "video" ? watermark(me, 6) : null);
  box.append(frame, hint);

  let resumeAt = null;
  const saved = lesson.progress;
  if (saved && saved.position_seconds >= RESUME_MIN_SECONDS
      && !(saved.duration_seconds && saved.position_seconds > saved.duration_seconds - RESUME_END_MARGIN)) {
    resumeAt = saved.position_seconds;
    hint.textContent = `从 ${clockText(resumeAt)} 继续播放`;
    hint.hidden = false;
  }
  let lastSaved = 0;
  let lastPosition = resumeAt || 0;
  let refreshes = 0;
  let gone = false;

  const body = () => {
    const position = Number.isFinite(media.currentTime) ? media.currentTime : lastPosition;
    const duration = Number.isFinite(media.duration) && media.duration > 0 ? media.duration : null;
    const out = { position_seconds: duration ? Math.min(position, duration) : position };
    if (duration) out.duration_seconds = duration;
    return out;
  };

  async function save() {
    if (gone || media.readyState === 0) return;
    lastSaved = Date.now();
    lastPosition = media.currentTime;
    try {
      await kpay.put(`${path}/progress`, body());
    } catch {
      /* the next save tries again; playing goes on */
    }
  }

  /** On the way out the page may be gone before an ordinary fetch ends: keepalive. */
  function saveOnLeave() {
    if (gone || media.readyState === 0 || !kpay.token) return;
    fetch(`${path}/progress`, {
      method: "PUT", keepalive: true,
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${kpay.token}` },
      body: JSON.stringify(body()),
    }).catch(() => {});
  }

  media.addEventListener("loadedmetadata", () => {
    if (resumeAt !== null) media.currentTime = resumeAt;
  });
  media.addEventListener("timeupdate", () => {
    if (!media.paused && Date.now() - lastSaved >= SAVE_EVERY_MS) save();
  });
  media.addEventListener("pause", () => save());
  media.addEventListener("ended", () => save());
  media.addEventListener("play", () => { hint.hidden = true; });
  // A signed URL lives a few minutes: when loading fails, ask for the lesson again and
  // go on from where the reader was.
  media.addEventListener("error", async () => {
    if (gone || refreshes >= MAX_REFRESHES) return;
    refreshes += 1;
    try {
      const fresh = await refetch();
      const url = fresh?.[`${kind}_url`];
      if (!url || gone) return;
      resumeAt = lastPosition || media.currentTime || resumeAt;
      media.src = url;
      media.load();
    } catch {
      /* shown by the page when the lesson itself cannot be read */
    }
  });
  const onHide = () => { if (document.visibilityState === "hidden") saveOnLeave(); };
  document.addEventListener("visibilitychange", onHide);
  window.addEventListener("pagehide", saveOnLeave);

  return {
    element: media,
    save,
    destroy() {
      if (!media.paused) media.pause();
      saveOnLeave();
      gone = true;
      document.removeEventListener("visibilitychange", onHide);
      window.removeEventListener("pagehide", saveOnLeave);
      media.removeAttribute("src");
      media.load();
    },
  };
}
