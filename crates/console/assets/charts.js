// Charts drawn as SVG from data, with no library: a time-series line chart and a list of
// horizontal bars. Colours come from the stylesheet's series classes (s0…s5), so both themes
// apply; every chart has a text alternative (a title and a summary).
import { h } from './lib.js';

const NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * A line chart over time. `points`: [{t: ms, values: [n|null per series]}]; `series`: labels;
 * `format`: how the axis and summary show a value.
 */
export function lineChart({ title, points, series, format = String, height = 220 }) {
  const W = 640, H = height, L = 56, R = 12, T = 12, B = 26;
  const max = niceMax(Math.max(0, ...points.flatMap((p) => p.values.filter((v) => v !== null && v !== undefined))));
  const t0 = points.length ? points[0].t : 0;
  const t1 = points.length ? points[points.length - 1].t : 1;
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'none' });
  svg.appendChild(s('title', null, title));
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.appendChild(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.appendChild(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
  }
  const span = t1 - t0;
  const ticks = Math.min(6, points.length);
  for (let i = 0; i < ticks; i++) {
    const t = t0 + (span * i) / Math.max(1, ticks - 1);
    const d = new Date(t);
    const label = span > 2 * 86400000 ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    svg.appendChild(s('text', { x: x(t), y: H - 8, 'text-anchor': 'middle' }, label));
  }
  svg.appendChild(s('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  series.forEach((name, si) => {
    let d = '';
    let pen = false;
    for (const p of points) {
      const v = p.values[si];
      if (v === null || v === undefined) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (d) svg.appendChild(s('path', { class: `line s${si}`, d }));
    if (points.length === 1 && points[0].values[si] !== null) svg.appendChild(s('circle', { class: `s${si}`, cx: x(points[0].t), cy: y(points[0].values[si]), r: 3 }));
  });
  const legend = h('div', { class: 'legend' }, series.map((name, i) => h('span', null, h('span', { class: `sw s${i}` }), name)));
  const peak = series.map((name, i) => `${name} peak ${format(Math.max(0, ...points.map((p) => p.values[i] || 0)))}`).join(', ');
  return h('figure', { class: 'panel' }, h('figcaption', null, h('h3', null, title)), svg, legend, h('p', { class: 'skip' }, peak));
}

/** Horizontal bars: `rows` [{label, value, detail}] sorted by value; `format` shows a value. */
export function barList({ title, rows, format = String, onRow }) {
  const max = Math.max(0, ...rows.map((r) => r.value)) || 1;
  const items = rows.map((r) => h('tr', onRow ? { class: 'clickable', tabindex: '0', onclick: () => onRow(r), onkeydown: (e) => { if (e.key === 'Enter') onRow(r); } } : null,
    h('td', { class: 'wrap' }, r.label || '(none)'),
    h('td', null, barEl(r.value / max)),
    h('td', { class: 'num' }, format(r.value)),
    h('td', { class: 'num muted' }, r.detail || '')));
  return h('div', { class: 'panel' }, h('h3', null, title),
    rows.length ? h('table', null, h('tbody', null, items)) : h('p', { class: 'empty' }, 'No requests in this range.'));
}

function barEl(fraction) {
  const outer = h('div', { class: 'barbox' });
  const inner = h('div', { class: 'bar' });
  inner.style.width = Math.max(1, Math.round(fraction * 100)) + '%';
  outer.style.width = '160px';
  outer.appendChild(inner);
  return outer;
}
