// Small SVG charts for phones (docs/pages.md "数据"): a line chart with an optional band
// (the growth model's projection) and a horizontal bar chart. Own code, no library: two
// chart shapes do not need 50 KB, and SVG attributes keep to the strict CSP (no inline
// styles; colours come from kpay.css classes). Text is set as text, never as HTML.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 360;
const HEIGHT = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 34 };

function svgEl(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

/** Round tick values for 0..max: 0 and three more, on 1, 2 or 5 times a power of ten. */
export function ticks(max) {
  if (!(max > 0)) return [0, 1];
  const raw = max / 3;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = 0; v <= max + step * 0.999; v += step) out.push(v);
  return out;
}

/** A short number for an axis: 12000 -> "1.2万". */
export function shortNumber(value) {
  if (Math.abs(value) >= 10000) return `${+(value / 10000).toFixed(1)}万`;
  return `${+value.toFixed(value >= 100 || Number.isInteger(value) ? 0 : 1)}`;
}

function frame(el, label) {
  el.replaceChildren();
  const svg = svgEl("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img",
    "aria-label": label });
  el.append(svg);
  return svg;
}

/**
 * lineChart(el, {labels, series: [{name, values, dashed}]}, {band, format, label})
 * labels: the x-axis text per point (dates "2026-03-01" are shown as "3/1"); values may
 * be null (no line there). band: {low: [...], high: [...]} drawn under the lines.
 * format(value) writes the y-axis ticks (default shortNumber; ¥ for money).
 */
export function lineChart(el, { labels, series }, { band = null, format = shortNumber, label = "折线图" } = {}) {
  const svg = frame(el, label);
  const all = series.flatMap((s) => s.values).concat(band ? band.high : []).filter((v) => v !== null);
  const top = ticks(Math.max(...all, 0));
  const yMax = top[top.length - 1] || 1;
  const n = Math.max(labels.length - 1, 1);
  const x = (i) => PAD.left + (i / n) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / yMax) * (HEIGHT - PAD.top - PAD.bottom);
  for (const t of top) {
    svg.append(svgEl("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(t), y2: y(t), class: "chart-grid" }));
    svg.append(svgEl("text", { x: PAD.left - 6, y: y(t) + 5, "text-anchor": "end", class: "chart-axis" }, format(t)));
  }
  const shown = labels.length > 1 ? [0, Math.floor((labels.length - 1) / 2), labels.length - 1] : [0];
  for (const i of new Set(shown)) {
    const anchor = i === 0 ? "start" : i === labels.length - 1 ? "end" : "middle";
    svg.append(svgEl("text", { x: x(i), y: HEIGHT - 10, "text-anchor": anchor, class: "chart-axis" }, dayText(labels[i])));
  }
  if (band) {
    const upper = band.high.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean);
    const lower = band.low.map((v, i) => (v === null ? null : `${x(i)},${y(v)}`)).filter(Boolean).reverse();
    if (upper.length) svg.append(svgEl("polygon", { points: [...upper, ...lower].join(" "), class: "chart-band" }));
  }
  series.forEach((s, index) => {
    let path = "";
    let pen = "M";
    s.values.forEach((v, i) => {
      if (v === null) { pen = "M"; return; }
      path += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    });
    svg.append(svgEl("path", { d: path, class: `chart-line chart-line-${index}${s.dashed ? " chart-dashed" : ""}` }));
  });
  el.append(legend(series.map((s, index) => ({ name: s.name, index }))
    .concat(band ? [{ name: band.name || "95% 区间", index: "band" }] : [])));
}

/** barChart(el, [{label, value, note}], {format}): horizontal bars, one row each. */
export function barChart(el, items, { format = shortNumber, label = "条形图" } = {}) {
  el.replaceChildren();
  const list = document.createElement("ol");
  list.className = "chart-bars";
  list.setAttribute("aria-label", label);
  const max = Math.max(...items.map((item) => item.value), 0) || 1;
  for (const item of items) {
    const row = document.createElement("li");
    const name = document.createElement("span");
    name.className = "chart-bar-label";
    name.textContent = item.label;
    const value = document.createElement("span");
    value.className = "chart-bar-value";
    value.textContent = format(item.value) + (item.note ? ` · ${item.note}` : "");
    const svg = svgEl("svg", { viewBox: "0 0 100 8", preserveAspectRatio: "none", class: "chart-bar", "aria-hidden": "true" });
    svg.append(svgEl("rect", { x: 0, y: 0, height: 8, width: Math.max((item.value / max) * 100, 0.5), rx: 2, class: "chart-bar-fill" }));
    row.append(name, value, svg);
    list.append(row);
  }
  el.append(list);
}

function legend(entries) {
  const box = document.createElement("p");
  box.className = "chart-legend";
  for (const { name, index } of entries) {
    const key = document.createElement("span");
    key.className = `chart-key chart-key-${index}`;
    const text = document.createElement("span");
    text.textContent = name;
    box.append(key, text);
  }
  return box;
}

/** "2026-03-01" -> "3/1"; anything else as it is. */
export function dayText(label) {
  const match = /^\d{4}-(\d{2})-(\d{2})$/.exec(label || "");
  return match ? `${Number(match[1])}/${Number(match[2])}` : String(label ?? "");
}
