// The kpay socket: auth, request/reply by ref, subscriptions that resume after a reconnect,
// exponential back-off with jitter, ping keepalive and one connection state for the page.
//
// States (the "state" event, `socket.state`):
//   "connecting"    first connection under way (or retrying before it ever succeeded)
//   "online"        authenticated; subscriptions are live
//   "reconnecting"  was online, lost the connection, a retry is scheduled or under way
//   "offline"       not trying: the browser is offline, there is no token, the token was
//                   refused (event "unauthorized"), or close() was called
//
// Events (EventTarget; `socket.on(type, fn)` is a shorthand returning an "off" function):
//   state        {state, previous}
//   event        the event frame {op:"event", ch, seq, type, data}
//   resync       {ch, reason, since}: the subscription resumed (from ``since``) but events
//                may have been missed
//                ("history_lost": the server said recovered:false; "no_seq": nothing was
//                received before the drop, so there was no seq to resume from). Refetch.
//   unsubscribed {ch, reason}: the server ended a subscription (e.g. removed from a room)
//   unauthorized {code, reason}: the server refused the token (close 4401; reason is the
//                   error code: token_expired, token_revoked, account_blocked, ...); log in again

import { ApiError, errorFromEnvelope } from "./errors.js";

const CLOSE_UNAUTHORIZED = 4401;
const SEEN_PER_CHANNEL = 512;
// Failures that say nothing about the subscription itself: it is retried on reconnect.
const TRANSIENT = new Set(["disconnected", "offline", "timeout"]);

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, with "equal
 * jitter" (half fixed, half random) so a server restart is not met by every client at once. */
export function nextDelay(attempt, { base = 500, max = 30000 } = {}, random = Math.random) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

function socketUrl(base) {
  const origin = base || globalThis.location.origin;
  return origin.replace(/^http/, "ws") + "/ws";
}

/** One channel subscription. `lastSeq` is the newest seq received; it is sent as
 * `since` when the socket resubscribes after a reconnect. */
class Subscription {
  constructor(socket, channel,
              { since = null, onEvent, onSubscribed, onResync, onEnd, onError } = {}) {
    this.socket = socket;
    this.channel = channel;
    this.lastSeq = since;
    this.active = false;
    this.closed = false;
    this.handlers = { onEvent, onSubscribed, onResync, onEnd, onError };
    this._seen = new Set();
  }

  /** Take an event frame; false when it is a repeat (resume can resend what came live). */
  accept(frame) {
    if (this._seen.has(frame.seq)) return false;
    this._seen.add(frame.seq);
    if (this._seen.size > SEEN_PER_CHANNEL) this._seen.delete(this._seen.values().next().value);
    if (this.lastSeq === null || frame.seq > this.lastSeq) this.lastSeq = frame.seq;
    return true;
  }

  unsubscribe() {
    if (this.closed) return;
    this.closed = true;
    this.socket._forget(this);
  }
}

export class KPaySocket extends EventTarget {
  /**
   * @param {import("./kpay.js").KPay} client  gives the token (`client.token`) and base URL
   * @param {object} options
   *   url: socket URL (default: ws(s)://<host>/ws); tokenInUrl: send ?token= instead of an
   *   auth frame; pingSeconds (25), pongTimeoutSeconds (10), requestTimeoutSeconds (10),
   *   backoff: {base: ms, max: ms}
   */
  constructor(client, options = {}) {
    super();
    this.client = client;
    this.url = options.url || socketUrl(client.base);
    this.tokenInUrl = Boolean(options.tokenInUrl);
    this.pingMs = (options.pingSeconds ?? 25) * 1000;
    this.pongTimeoutMs = (options.pongTimeoutSeconds ?? 10) * 1000;
    this.requestTimeoutMs = (options.requestTimeoutSeconds ?? 10) * 1000;
    this.backoff = { base: 500, max: 30000, ...(options.backoff || {}) };
    this.state = "offline";
    this.subscriptions = new Map();
    this._ws = null;
    this._ref = 0;
    this._pending = new Map();
    this._attempt = 0;
    this._everOnline = false;
    this._started = false;
    this._retryTimer = null;
    this._pingTimer = null;
    this._listening = false;
  }

  // -- public -----------------------------------------------------------------------

  /** `fn` for every event of `type`; returns a function that stops it. */
  on(type, fn) {
    const listener = (event) => fn(event.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /** Start connecting (and keep reconnecting until close()). Safe to call twice. */
  connect() {
    if (this._started) return this;
    this._started = true;
    this._listenToBrowser();
    this._open();
    return this;
  }

  /** Stop for good: close the socket, no reconnect, state "offline". */
  close() {
    this._started = false;
    this._clearTimers();
    this._drop(1000, "client closed");
    this._setState("offline");
  }

  /** Reconnect now (e.g. after login changed the token); subscriptions carry over. */
  restart() {
    if (!this._started) return;
    this._clearTimers();
    this._drop(1000, "restart");
    this._attempt = 0;
    this._open();
  }

  /** Send `{op, ref, ...fields}` and resolve with the reply; reject with ApiError when the
   * reply says ok:false, when offline ("offline"), on timeout or if the socket drops. */
  request(op, fields = {}, { timeoutMs = this.requestTimeoutMs } = {}) {
    if (this.state !== "online") {
      return Promise.reject(new ApiError(0, "offline", "socket is not connected"));
    }
    return this._send(op, fields, timeoutMs);
  }

  /** Publish on a channel the server lets clients publish on. */
  publish(channel, type, data = {}) {
    return this.request("pub", { ch: channel, type, data });
  }

  /**
   * Subscribe to `channel`; kept across reconnects (resumed with `since`).
   * options: since (seq to resume from, e.g. from a REST replay), onEvent(frame),
   * onSubscribed({ch, resumed}) (the server confirmed it; events from now on arrive),
   * onResync({ch, reason, since}), onEnd({ch, reason}), onError(ApiError) (e.g. forbidden).
   * Returns the subscription ({channel, lastSeq, active, unsubscribe()}).
   */
  subscribe(channel, options = {}) {
    const existing = this.subscriptions.get(channel);
    if (existing) existing.unsubscribe();
    const subscription = new Subscription(this, channel, options);
    this.subscriptions.set(channel, subscription);
    if (this.state === "online") this._sendSub(subscription, false);
    return subscription;
  }

  // -- connection ---------------------------------------------------------------------

  _open() {
    if (!this._started) return;
    const token = this.client.token;
    if (!token) {
      this._setState("offline");
      return;
    }
    if (globalThis.navigator && globalThis.navigator.onLine === false) {
      this._setState("offline"); // the "online" event of the window brings us back
      return;
    }
    this._setState(this._everOnline ? "reconnecting" : "connecting");
    const url = this.tokenInUrl ? `${this.url}?token=${encodeURIComponent(token)}` : this.url;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this._scheduleRetry();
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._authenticate(ws, token);
    ws.onmessage = (message) => this._receive(message.data);
    ws.onclose = (event) => this._closed(ws, event.code, event.reason);
    ws.onerror = () => {}; // onclose follows and decides; the browser logs the detail
  }

  _authenticate(ws, token) {
    if (ws !== this._ws) return;
    if (this.tokenInUrl) {
      this._online();
      return;
    }
    this._send("auth", { token }, this.requestTimeoutMs).then(
      () => this._online(),
      (error) => {
        // A refused token closes the socket with 4401 (_closed handles it); a socket
        // that does not answer at all is dropped and retried.
        if (error.code === "timeout" && ws === this._ws) {
          this._drop(4000, "auth timeout");
          this._afterDrop(4000);
        }
      },
    );
  }

  _online() {
    this._attempt = 0;
    const resumed = this._everOnline;
    this._everOnline = true;
    this._setState("online");
    for (const subscription of this.subscriptions.values()) this._sendSub(subscription, resumed);
    this._schedulePing();
  }

  _closed(ws, code, reason = "") {
    if (ws !== this._ws) return; // an old socket we already left
    this._ws = null;
    this._afterDrop(code, reason);
  }

  /** Leave the current socket at once (do not wait for its close handshake). */
  _drop(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    this._failPending();
    for (const subscription of this.subscriptions.values()) subscription.active = false;
  }

  _afterDrop(code, reason = "") {
    this._clearPing();
    this._failPending();
    for (const subscription of this.subscriptions.values()) subscription.active = false;
    if (!this._started) {
      this._setState("offline");
      return;
    }
    if (code === CLOSE_UNAUTHORIZED) {
      this._started = false;
      this._setState("offline");
      this._emit("unauthorized", { code, reason });
      return;
    }
    this._scheduleRetry();
  }

  _scheduleRetry() {
    this._setState(this._everOnline ? "reconnecting" : "connecting");
    const delay = nextDelay(this._attempt, this.backoff);
    this._attempt += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
  }

  _listenToBrowser() {
    if (this._listening || !globalThis.addEventListener) return;
    this._listening = true;
    globalThis.addEventListener("offline", () => {
      if (!this._started) return;
      this._clearTimers();
      this._drop(1000, "browser offline");
      this._setState("offline");
    });
    globalThis.addEventListener("online", () => {
      if (!this._started || this._ws) return;
      this._clearTimers();
      this._attempt = 0;
      this._open();
    });
    globalThis.document?.addEventListener("visibilitychange", () => {
      // A phone that wakes up should not wait out a long back-off.
      if (document.visibilityState === "visible" && this._retryTimer && this._started) {
        this._clearTimers();
        this._open();
      }
    });
  }

  // -- keepalive ------------------------------------------------------------------------

  _schedulePing() {
    this._clearPing();
    if (!this.pingMs) return;
    this._pingTimer = setTimeout(() => {
      const ws = this._ws;
      this._send("ping", {}, this.pongTimeoutMs).then(
        () => this._schedulePing(),
        (error) => {
          // No pong in time: the connection is dead even if the browser has not noticed.
          if (error.code === "timeout" && ws === this._ws) {
            this._drop(4000, "ping timeout");
            this._afterDrop(4000);
          }
        },
      );
    }, this.pingMs);
  }

  _clearPing() {
    clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }

  _clearTimers() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._clearPing();
  }

  // -- frames ---------------------------------------------------------------------------

  _send(op, fields, timeoutMs) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ApiError(0, "offline", "socket is not connected"));
    }
    this._ref += 1;
    const ref = this._ref;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new ApiError(0, "timeout", `no reply to ${op} in ${timeoutMs} ms`));
      }, timeoutMs);
      this._pending.set(ref, { resolve, reject, timer });
      ws.send(JSON.stringify({ op, ref, ...fields }));
    });
  }

  _failPending() {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new ApiError(0, "disconnected", "the connection was lost"));
    }
    this._pending.clear();
  }

  _receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.op === "reply") {
      const pending = this._pending.get(frame.ref);
      if (!pending) return;
      this._pending.delete(frame.ref);
      clearTimeout(pending.timer);
      if (frame.ok) pending.resolve(frame);
      else pending.reject(errorFromEnvelope(0, frame));
    } else if (frame.op === "event") {
      const subscription = this.subscriptions.get(frame.ch);
      if (subscription && !subscription.accept(frame)) return;
      subscription?.handlers.onEvent?.(frame);
      this._emit("event", frame);
    } else if (frame.op === "unsubscribed") {
      const subscription = this.subscriptions.get(frame.ch);
      if (subscription) {
        subscription.closed = true;
        this.subscriptions.delete(frame.ch);
        subscription.handlers.onEnd?.({ ch: frame.ch, reason: frame.reason });
      }
      this._emit("unsubscribed", { ch: frame.ch, reason: frame.reason });
    }
  }

  async _sendSub(subscription, resumed) {
    const fields = { ch: subscription.channel };
    if (subscription.lastSeq !== null) fields.since = subscription.lastSeq;
    try {
      const reply = await this._send("sub", fields, this.requestTimeoutMs);
      if (subscription.closed) return;
      subscription.active = true;
      subscription.handlers.onSubscribed?.({ ch: subscription.channel, resumed });
      let reason = null;
      if ("since" in fields && reply.recovered === false) reason = "history_lost";
      else if (resumed && !("since" in fields)) reason = "no_seq";
      if (reason) {
        // ``since``: where the resumed subscription started. The replay must start
        // there, not at the newest seq seen: the history frames that follow the reply
        // may be applied before the page's catch-up reads its own last seq.
        const detail = { ch: subscription.channel, reason, since: fields.since ?? null };
        subscription.handlers.onResync?.(detail);
        this._emit("resync", detail);
      }
    } catch (error) {
      if (subscription.closed || TRANSIENT.has(error.code)) {
        return; // resubscribed on the next connection
      }
      subscription.closed = true;
      this.subscriptions.delete(subscription.channel);
      subscription.handlers.onError?.(error);
    }
  }

  _forget(subscription) {
    if (this.subscriptions.get(subscription.channel) !== subscription) return;
    this.subscriptions.delete(subscription.channel);
    if (this.state === "online") {
      this._send("unsub", { ch: subscription.channel }, this.requestTimeoutMs).catch(() => {});
    }
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
