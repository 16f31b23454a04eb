// kpay.js: the browser client of kpay's public contract (docs/pages.md, API.md).
//
//   import { KPay, formatFen } from "/static/js/kpay.js";
//   const kpay = new KPay();
//   const wallet = await kpay.get("/api/v1/wallet");        // throws ApiError on failure
//   const socket = kpay.socket();                           // one shared socket per client
//   socket.addEventListener("state", (e) => show(e.detail.state));
//   socket.subscribe("user:" + me.id, { onEvent: (frame) => ..., onResync: () => refetch() });
//
// No build step and no dependencies: plain ES module, served from /static/js/.

import { ApiError, errorFromEnvelope } from "./errors.js";
import { KPaySocket } from "./socket.js";

export { ApiError, errorFromEnvelope } from "./errors.js";
export { formatFen, parseYuan } from "./money.js";
export { KPaySocket, nextDelay } from "./socket.js";

const TOKEN_KEY = "kpay.token";
const USER_KEY = "kpay.user";
const ENDED_KEY = "kpay.session_ended";

function readStorage(storage, key) {
  try {
    return storage?.getItem(key) ?? null;
  } catch {
    return null; // storage can be disabled (private mode); then nothing is remembered
  }
}

function writeStorage(storage, key, value) {
  try {
    if (value === null) storage?.removeItem(key);
    else storage?.setItem(key, value);
  } catch {
    /* not remembered; the page still works for this visit */
  }
}

/** Whole seconds to wait from a `Retry-After` header (seconds, or an HTTP date), else
 * from the envelope's `retry_after`; null when neither says. */
export function retryAfterSeconds(header, details = {}) {
  const text = (header || "").trim();
  if (/^\d+$/.test(text)) return Math.max(1, Number(text));
  if (text) {
    const at = Date.parse(text);
    if (!Number.isNaN(at)) return Math.max(1, Math.ceil((at - Date.now()) / 1000));
  }
  const fromBody = details?.retry_after;
  return Number.isSafeInteger(fromBody) && fromBody > 0 ? fromBody : null;
}

/** The REST client: token handling, JSON in and out, errors as ApiError. */
export class KPay {
  /**
   * @param {object} options
   * @param {string} [options.base] origin of the kpay server ("" = this page's origin)
   * @param {Storage} [options.storage] where the token is kept (default localStorage)
   */
  constructor({ base = "", storage = globalThis.localStorage } = {}) {
    this.base = base;
    this.storage = storage;
    this._socket = null;
    this.adoptTokenFromHash();
  }

  // -- token and user ---------------------------------------------------------------

  get token() {
    return readStorage(this.storage, TOKEN_KEY);
  }

  /** The user saved at login ({id, role, name}) or null; `me()` asks the server. */
  get user() {
    const raw = readStorage(this.storage, USER_KEY);
    try {
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  setSession(token, user = null) {
    writeStorage(this.storage, TOKEN_KEY, token);
    writeStorage(this.storage, USER_KEY, user ? JSON.stringify(user) : null);
    if (this._socket) this._socket.restart();
  }

  /** Forget the session. `endedBecause` (an error code such as "account_blocked" or
   * "token_revoked") is kept for the login page to say why: `takeSessionEnd()`. */
  logout(endedBecause = null) {
    writeStorage(this.storage, TOKEN_KEY, null);
    writeStorage(this.storage, USER_KEY, null);
    writeStorage(this.storage, ENDED_KEY, endedBecause);
    if (this._socket) this._socket.close();
  }

  /** Why the last session ended (an error code), once; null if it was not ended. */
  takeSessionEnd() {
    const code = readStorage(this.storage, ENDED_KEY);
    writeStorage(this.storage, ENDED_KEY, null);
    return code;
  }

  /** A server that logs a user in by redirect (e.g. after WeChat OAuth) may hand the token
   * as `#token=...`: the fragment never reaches server logs. Keep it and clean the URL. */
  adoptTokenFromHash() {
    const hash = globalThis.location?.hash || "";
    const match = /[#&]token=([^&]+)/.exec(hash);
    if (!match) return;
    writeStorage(this.storage, TOKEN_KEY, decodeURIComponent(match[1]));
    writeStorage(this.storage, USER_KEY, null);
    const { pathname, search } = globalThis.location;
    globalThis.history?.replaceState(null, "", pathname + search);
  }

  // -- REST ---------------------------------------------------------------------------

  /** Call the API. Resolves to the parsed JSON body; rejects with ApiError. */
  async request(method, path, body = undefined) {
    const headers = { Accept: "application/json" };
    const token = this.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.base + path, init);
    } catch (cause) {
      throw new ApiError(0, "network_error", String(cause?.message || cause));
    }
    const text = await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (!response.ok) {
      const error = errorFromEnvelope(response.status, parsed);
      // 429: how many seconds to wait (errorText shows it; nothing here retries).
      const retryAfter = retryAfterSeconds(response.headers.get("Retry-After"), error.details);
      if (retryAfter !== null) error.retryAfter = retryAfter;
      throw error;
    }
    return parsed;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }

  put(path, body = {}) {
    return this.request("PUT", path, body);
  }

  // -- identity and discovery --------------------------------------------------------

  /** True when the server runs in dev mode (its dev routes exist). */
  async devEnabled() {
    try {
      await this.get("/api/v1/dev/clock");
      return true;
    } catch (error) {
      if (error.status === 404) return false;
      throw error;
    }
  }

  /** Dev mode: log in as anyone; keeps the token and returns the user. */
  async devLogin(userId, role, name = undefined) {
    const body = { user_id: userId, role };
    if (name) body.name = name;
    const reply = await this.post("/api/v1/dev/login", body);
    this.setSession(reply.token, reply.user);
    return reply.user;
  }

  /** The current user from the server ({id, role, name}); null without a token.
   * A rejected token is forgotten (401), so the page shows the login again. */
  async me() {
    if (!this.token) return null;
    try {
      const user = await this.get("/api/v1/me");
      writeStorage(this.storage, USER_KEY, JSON.stringify(user));
      return user;
    } catch (error) {
      // An ended session (expired, logged out elsewhere, blocked): back to the login,
      // which says why.
      if (error.status === 401 || error.code === "account_blocked") {
        this.logout(error.code || "unauthorized");
        return null;
      }
      throw error;
    }
  }

  /** The set of API paths this server has (from its OpenAPI document), so a page can
   * show only the features whose plugins are loaded: `paths.has("/api/v1/rooms")`. */
  async apiPaths() {
    const document = await this.get("/api/v1/openapi.json");
    return new Set(Object.keys(document?.paths || {}));
  }

  // -- realtime ------------------------------------------------------------------------

  /** The shared socket of this client (created, not yet connected, on first call). */
  socket(options = {}) {
    if (!this._socket) this._socket = new KPaySocket(this, options);
    return this._socket;
  }
}
