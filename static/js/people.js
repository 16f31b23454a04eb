// People on pages: nicknames and avatars, looked up by user id in batches through
// GET /api/v1/users/profiles?ids= (at most 50 a call; docs/api.md "People"). Lists from
// the API carry ids (asker_id, student_id, consultant_id, author_id); a page draws a
// person with what is known and draws again once `load` has fetched the rest. A person
// is never shown by id: until known, or when unknown, a role word stands in (学员, 用户).

import { avatar, el } from "./ui.js";

const BATCH = 50;
const USER_ID = /^[A-Za-z0-9_.-]{1,64}$/; // what the server takes (others are no user)

export class People {
  constructor(kpay) {
    this.kpay = kpay;
    this.known = new Map(); // id -> profile, or null once looked up and not found
    this.pending = new Map(); // id -> the request looking it up
  }

  /** Add profiles the page already has ({id, name, avatar_url}), e.g. from /me. */
  remember(...profiles) {
    for (const profile of profiles) if (profile?.id) this.known.set(profile.id, profile);
  }

  /** Look up the ids not known yet; resolves to true when something new was learnt (draw
   * again then). A failed lookup is not retried on this page: names fall back. */
  async load(ids) {
    const wanted = [...new Set(ids)].filter((id) => typeof id === "string"
      && !this.known.has(id) && !this.pending.has(id));
    for (const id of wanted.filter((one) => !USER_ID.test(one))) this.known.set(id, null);
    const asked = wanted.filter((id) => USER_ID.test(id));
    for (let start = 0; start < asked.length; start += BATCH) {
      const part = asked.slice(start, start + BATCH);
      const request = this.kpay.get(`/api/v1/users/profiles?ids=${part.map(encodeURIComponent).join(",")}`)
        .then(({ profiles }) => {
          for (const id of part) this.known.set(id, profiles?.[id] || null);
          return part.some((id) => profiles?.[id]);
        })
        .catch(() => {
          for (const id of part) this.known.set(id, null);
          return false;
        })
        .finally(() => {
          for (const id of part) this.pending.delete(id);
        });
      for (const id of part) this.pending.set(id, request);
    }
    const waits = [...new Set([...new Set(ids)].map((id) => this.pending.get(id)).filter(Boolean))];
    return (await Promise.all(waits)).some(Boolean);
  }

  /** The profile of `id` if known, else null. */
  get(id) {
    return this.known.get(id) || null;
  }

  /** The nickname of `id`, or `fallback` (a role word, never the id). */
  name(id, fallback = "用户") {
    return this.get(id)?.name || fallback;
  }

  /** A link to the person's public page (profile.html): `a.person` with avatar, nickname
   * and a muted `role` word (主持人, 讲师). */
  link(id, { size = 32, fallback = "用户", role = "" } = {}) {
    const profile = this.get(id);
    const name = profile?.name || fallback;
    return el("a", {
      class: "person", href: `/static/profile.html?id=${encodeURIComponent(id)}`,
      "aria-label": `${role ? `${role} ` : ""}${name} 的主页`,
    }, avatar(profile || { id, name }, size), el("span", { class: "name" }, name),
    role ? el("span", { class: "muted small role" }, `${role} · 主页 ›`) : null);
  }

  /** A person as `span.person`: avatar and `label` (default their nickname). */
  badge(id, { size = 28, label = null, fallback = "用户" } = {}) {
    const profile = this.get(id);
    const text = label ?? (profile?.name || fallback);
    return el("span", { class: "person" },
      avatar(profile || { id, name: text }, size),
      el("span", { class: "name" }, text));
  }
}
