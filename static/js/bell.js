// The bell in a page's top bar: a link to notifications.html with the unread count, kept
// live from the `notification` events on user:<id> (docs/pages.md "Notifications").
//   <a class="bell" id="bell" href="/static/notifications.html" hidden></a>
//   mountBell($("#bell"), {kpay, socket, me});

import { onUserEvent } from "./user-channel.js";

const SVG = "http://www.w3.org/2000/svg";

function bellIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z");
  svg.append(path);
  return svg;
}

/** "99+" past 99; the count for people. */
export function countText(count) {
  return count > 99 ? "99+" : String(count);
}

/** Fill `link` (an <a> in the top bar) with the bell and keep its count. Returns
 * {refresh()}, which reads the count again. */
export function mountBell(link, { kpay, socket, me }) {
  const badge = document.createElement("span");
  badge.className = "bell-count";
  badge.hidden = true;
  link.replaceChildren(bellIcon(), badge);
  link.href = "/static/notifications.html";
  link.hidden = false;

  const render = (count) => {
    badge.textContent = countText(count);
    badge.hidden = count <= 0;
    link.setAttribute("aria-label", count > 0 ? `消息通知，${count} 条未读` : "消息通知");
  };
  render(0);
  let asking = 0;
  const refresh = async () => {
    const mine = ++asking; // a slower earlier answer must not overwrite a newer one
    try {
      const { unread } = await kpay.get("/api/v1/notifications/unread-count");
      if (mine === asking) render(unread);
    } catch {
      /* the count stays; the next event or visit reads it again */
    }
  };
  onUserEvent(socket, me.id, {
    onEvent: (frame) => { if (frame.type === "notification") refresh(); },
    onResync: refresh,
  });
  // Back from notifications.html (read there) or another tab.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
  window.addEventListener("pageshow", (event) => { if (event.persisted) refresh(); });
  refresh();
  return { refresh };
}
