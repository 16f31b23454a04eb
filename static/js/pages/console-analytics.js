// The console's 数据 section (console.html #panel-analytics; docs/pages.md "数据"): the
// seller's dashboard (GET /api/v1/analytics/dashboard) as charts, and the growth model
// (GET /api/v1/analytics/growth) with its projection band or the reason it refuses. Each
// chart downloads its data as CSV. The admin console mounts the same module with
// mountAnalytics(panel, {kpay, scope: "platform"}).

import { errorFromEnvelope, formatFen } from "../kpay.js";
import { barChart, dayText, lineChart } from "../charts.js";
import { el, showError } from "../ui.js";

const KIND_NAMES = {
  live_ticket: "直播门票", live_question: "付费提问", course: "课程",
  wallet_topup: "钱包充值",
};
const RANGES = [[7, "近 7 天"], [30, "近 30 天"], [90, "近 90 天"]];
const UNIT_FORMATS = { fen: formatFen, minutes: (v) => `${v} 分钟`, count: (v) => `${v}` };
const SERIES_NAMES = { students: "我的学员", users: "注册用户", paying: "付费用户" };

const yuanAxis = (fen) => (Math.abs(fen) >= 1_000_000 ? `¥${+(fen / 1_000_000).toFixed(1)}万` : `¥${Math.round(fen / 100)}`);
const kindName = (kind) => KIND_NAMES[kind] || "其他";
const percent = (r) => `${(r * 100).toFixed(2)}%`;

/** The day ``days`` after ``day`` ("YYYY-MM-DD"), computed in UTC (no local zone). */
function addDays(day, days) {
  return new Date(Date.parse(`${day}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
}

/** The console's section entry (console.js SECTIONS): the caller's own figures. */
export function mount(panel, context) {
  return mountAnalytics(panel, { kpay: context.kpay, scope: "own" });
}

/** Mount the dashboard in ``panel``; ``scope`` "own" (a consultant) or "platform" (admins). */
export async function mountAnalytics(panel, { kpay, scope = "own" }) {
  const errorBox = el("div", { class: "alert", role: "alert", hidden: true });
  // today: the server's day (its clock and time zone), learnt from the first answer.
  const state = { days: 30, series: scope === "platform" ? "users" : "students", today: null };
  const scopeQuery = scope === "platform" ? "&scope=platform" : "";

  const range = el("div", { class: "analytics-range", role: "group", "aria-label": "时间范围" },
    RANGES.map(([days, text]) => {
      const button = el("button", { type: "button", class: "btn plain small", "data-days": days, "aria-pressed": String(days === state.days) }, text);
      button.addEventListener("click", () => { state.days = days; refresh(); });
      return button;
    }));
  const card = (id, title, ...children) => el("section", { class: "card", id, "aria-labelledby": `${id}-title` },
    el("h2", { id: `${id}-title` }, title), ...children);
  const revenueStats = el("div", { class: "stat-grid" });
  const revenueChart = el("div", { id: "an-revenue-chart" });
  const kindsChart = el("div", { id: "an-kinds-chart" });
  const studentStats = el("div", { class: "stat-grid" });
  const studentsChart = el("div", { id: "an-students-chart" });
  const productsChart = el("div", { id: "an-products-chart" });
  const growthBody = el("div", { id: "an-growth-body" });
  const sectionsBox = el("div", { id: "an-sections" }); // what plugins add (live rooms, courses...)
  const seriesPick = scope === "platform"
    ? el("div", { class: "analytics-range", role: "group", "aria-label": "人数" },
      ["users", "paying"].map((s) => {
        const button = el("button", { type: "button", class: "btn plain small", "data-series": s }, SERIES_NAMES[s]);
        button.addEventListener("click", () => { state.series = s; loadGrowth(); });
        return button;
      }))
    : null;

  function download(path, name, text = "下载 CSV") {
    const link = el("a", { href: "#", class: "small" }, text);
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        const response = await fetch(`${kpay.base}${path()}`, { headers: { Authorization: `Bearer ${kpay.token}` } });
        if (!response.ok) throw errorFromEnvelope(response.status, await response.json().catch(() => null));
        const file = el("a", { href: URL.createObjectURL(await response.blob()), download: `${name}.csv` });
        file.click();
        setTimeout(() => URL.revokeObjectURL(file.href), 10_000);
      } catch (error) {
        showError(errorBox, error);
      }
    });
    return el("p", { class: "hint" }, link);
  }
  const chartCsv = (chart, text) => download(() => `/api/v1/analytics/dashboard?${query()}&format=csv&chart=${chart}`, `kpay-${chart}`, text);

  panel.replaceChildren(errorBox, range,
    card("an-revenue", "收入", revenueStats, revenueChart, chartCsv("revenue_daily", "下载每日 CSV"),
      chartCsv("revenue_weekly", "下载每周 CSV")),
    card("an-kinds", "订单类型", kindsChart, chartCsv("orders_by_kind")),
    card("an-students", "学员", studentStats, studentsChart, chartCsv("students")),
    card("an-products", "热销商品", productsChart, chartCsv("top_products")),
    sectionsBox,
    card("an-growth", "增长模型 N(t) = N₀·eʳᵗ", seriesPick, growthBody,
      download(() => `/api/v1/analytics/growth?${growthQuery()}&format=csv`, "kpay-growth")));

  function query() {
    const days = state.today ? `from=${addDays(state.today, 1 - state.days)}&to=${state.today}` : "";
    return `${days}${scopeQuery}`;
  }
  // The last 90 days to the server's today (the route's default).
  const growthQuery = () => `series=${state.series}${scopeQuery}`;
  const stat = (value, label) => el("div", { class: "stat" }, el("b", {}, value), el("span", {}, label));

  async function refresh() {
    for (const button of range.querySelectorAll("button")) button.setAttribute("aria-pressed", String(Number(button.dataset.days) === state.days));
    try {
      const data = await kpay.get(`/api/v1/analytics/dashboard?${query()}`);
      state.today = state.today || data.to;
      const totals = data.revenue.totals;
      revenueStats.replaceChildren(stat(formatFen(totals.sales), "销售额"), stat(formatFen(totals.net), "净收入"),
        stat(formatFen(totals.refunds), "退款"), stat(formatFen(totals.fees), "平台服务费"));
      const daily = data.revenue.daily;
      lineChart(revenueChart, { labels: daily.map((d) => d.day), series: [
        { name: "销售额", values: daily.map((d) => d.sales) },
        { name: "净收入", values: daily.map((d) => d.net) }] }, { format: yuanAxis, label: "每日收入" });
      if (data.orders_by_kind.length) {
        barChart(kindsChart, data.orders_by_kind.map((k) => ({ label: kindName(k.kind), value: k.amount, note: `${k.count} 单` })),
          { format: formatFen, label: "各类订单金额" });
      } else kindsChart.replaceChildren(el("p", { class: "muted" }, "这段时间还没有订单"));
      studentStats.replaceChildren(stat(String(data.students.new), "新学员"), stat(String(data.students.returning), "回头学员"));
      lineChart(studentsChart, { labels: data.students.daily.map((d) => d.day),
        series: [{ name: "每日新学员", values: data.students.daily.map((d) => d.new) }] }, { label: "每日新学员" });
      if (data.top_products.length) {
        barChart(productsChart, data.top_products.map((p) => ({ label: p.title, value: p.amount, note: `${p.count} 单` })),
          { format: formatFen, label: "热销商品" });
      } else productsChart.replaceChildren(el("p", { class: "muted" }, "这段时间还没有售出商品"));
      sectionsBox.replaceChildren(...data.sections.map((section) => {
        const chart = el("div", {});
        const box = card(`an-section-${section.key}`, section.title, chart);
        barChart(chart, section.items, { format: UNIT_FORMATS[section.unit] || String, label: section.title });
        return box;
      }));
    } catch (error) {
      showError(errorBox, error);
    }
  }

  async function loadGrowth() {
    if (seriesPick) for (const b of seriesPick.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.series === state.series));
    try {
      const data = await kpay.get(`/api/v1/analytics/growth?${growthQuery()}`);
      drawGrowth(growthBody, data);
    } catch (error) {
      showError(errorBox, error);
    }
  }

  await Promise.all([refresh(), loadGrowth()]);
  return { refresh };
}

/** The growth card: the fitted numbers and the chart with its projection band, or why not. */
function drawGrowth(box, { series, points, fit }) {
  const name = SERIES_NAMES[series];
  if (!fit.ok) {
    const chart = el("div", { id: "an-growth-chart" });
    box.replaceChildren(el("p", { class: "notice", id: "an-growth-refused", role: "status" }, fit.message), chart);
    if (points.length) lineChart(chart, { labels: points.map((p) => p.day), series: [{ name: `${name}（累计）`, values: points.map((p) => p.count) }] }, { label: `${name}累计人数` });
    return;
  }
  const [thirty, ninety] = fit.projections;
  const round = (v) => Math.round(v).toLocaleString("zh-CN");
  box.replaceChildren(
    el("div", { class: "stat-grid" },
      stat2(round(fit.n0), "N₀（起点人数）"), stat2(`${percent(fit.r)} / 天`, `每月 ${percent(fit.r_month)}`),
      stat2(`${fit.doubling_days.toFixed(1)} 天`, "翻倍时间"), stat2(fit.r2.toFixed(3), "拟合优度 R²")),
    el("p", { class: "hint" }, `r 的 95% 置信区间：${percent(fit.r_low)} ～ ${percent(fit.r_high)} / 天（${fit.days} 天数据）`),
    el("p", { class: "hint", id: "an-growth-projection" },
      `预计 30 天后约 ${round(thirty.n)} 人（${round(thirty.low)}～${round(thirty.high)}），90 天后约 ${round(ninety.n)} 人（${round(ninety.low)}～${round(ninety.high)}）`),
    el("div", { id: "an-growth-chart" }));
  // Actual counts, the fitted curve, and the 30-day projection with its band to the right
  // (90 days would flatten the actual counts into the axis; its numbers are in the text).
  const labels = points.map((p) => p.day);
  const ahead = [];
  for (let d = 1; d <= thirty.days; d += 1) ahead.push(addDays(labels[labels.length - 1], d));
  const n = points.length;
  const model = (t) => fit.n0 * Math.exp(fit.r * t);
  // The band from today's fitted value to the 30-day limits, interpolated in log space.
  const bandAt = (t, side) => Math.exp(Math.log(model(n - 1)) + (Math.log(thirty[side]) - Math.log(model(n - 1))) * ((t - (n - 1)) / thirty.days));
  const all = labels.concat(ahead);
  const actual = all.map((_, i) => (i < n ? points[i].count : null));
  const curve = all.map((_, i) => model(i));
  const low = all.map((_, i) => (i < n - 1 ? null : bandAt(i, "low")));
  const high = all.map((_, i) => (i < n - 1 ? null : bandAt(i, "high")));
  lineChart(box.querySelector("#an-growth-chart"), { labels: all.map((l) => l), series: [
    { name: `${name}（实际）`, values: actual },
    { name: "模型与预测", values: curve, dashed: true }] },
  { band: { low, high, name: "30 天预测 95% 区间" }, label: `${name}增长与预测` });
  box.append(el("p", { class: "hint" }, `横轴 ${dayText(labels[0])} 至 ${dayText(ahead[ahead.length - 1])}`));
}

function stat2(value, label) {
  return el("div", { class: "stat" }, el("b", {}, value), el("span", {}, label));
}
