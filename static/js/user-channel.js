// One subscription to the user's own channel user:<id> per socket, shared by every part
// of a page that listens to it (the bell, the console's earnings, a section). The socket
// keeps one subscription per channel: a second socket.subscribe would replace the first.

const channels = new WeakMap(); // socket -> {channel, listeners}

/** Call `onEvent(frame)` for every event on user:<userId> and `onResync()` when events
 * may have been missed; returns a function that stops listening. */
export function onUserEvent(socket, userId, { onEvent = () => {}, onResync = () => {} } = {}) {
  let shared = channels.get(socket);
  const channel = `user:${userId}`;
  if (!shared || shared.channel !== channel) {
    shared?.subscription.unsubscribe(); // another user logged in on this page
    shared = { channel, listeners: new Set(), subscription: null };
    channels.set(socket, shared);
    const each = (method, value) => {
      for (const listener of [...shared.listeners]) {
        try {
          listener[method](value);
        } catch (error) {
          // One broken listener must not starve the others; the page's console shows it.
          setTimeout(() => { throw error; });
        }
      }
    };
    shared.subscription = socket.subscribe(channel, {
      onEvent: (frame) => each("onEvent", frame),
      onResync: (info) => each("onResync", info),
    });
  }
  const listener = { onEvent, onResync };
  shared.listeners.add(listener);
  return () => shared.listeners.delete(listener);
}
