// A consultant's earnings (the earnings:<id> account, separate from the spending wallet):
// what the console's 我的收入 and the wallet page's 我的收入 card show. Kept current by
// `earnings_changed` on user:<id> (docs/pages.md "Notifications").

import { formatFen } from "./money.js";
import { $, show } from "./ui.js";

/** {balance, withdrawable, pending} in fen (withdrawable and pending null when the server
 * has no payouts), or null when it has no earnings route. */
export async function loadEarnings(kpay) {
  try {
    const summary = await kpay.get("/api/v1/earnings/summary");
    return { balance: summary.balance, withdrawable: summary.withdrawable, pending: summary.pending };
  } catch (error) {
    if (error?.status !== 404) throw error;
  }
  try {
    const { balance } = await kpay.get("/api/v1/earnings?limit=1");
    return { balance, withdrawable: null, pending: null };
  } catch (error) {
    if (error?.status === 404) return null;
    throw error;
  }
}

/** The wallet page's 我的收入 card (#earnings-card) for a consultant; returns refresh(). */
export function mountEarningsCard(card, { kpay }) {
  const refresh = async () => {
    const earnings = await loadEarnings(kpay);
    show(card, Boolean(earnings));
    if (!earnings) return;
    $("#earnings-balance", card).textContent = formatFen(earnings.balance);
    const known = earnings.withdrawable !== null;
    show($("#earnings-meta", card), known);
    if (known) {
      $("#earnings-withdrawable", card).textContent = formatFen(earnings.withdrawable);
      $("#earnings-pending", card).textContent = formatFen(earnings.pending);
    }
  };
  return refresh;
}
