// The overview: requests, errors, tokens, cost, cache hit ratio and latency over a chosen time
// range, as cards, charts over time and top lists by provider, model, team and key, plus the
// range's most expensive requests. A viewer sees its own team's traffic, a member its own.
import { api, h, replace, fmtInt, fmtUsd, fmtMs, fmtPct, navigate, errorBox, session, title, select, field, tail, link, statusBadge } from '../lib.js';
import { lineChart, barList } from '../charts.js';

const RANGES = {
  '1h': { label: 'Last hour', ms: 3600e3, interval: 'minute' },
  '24h': { label: 'Last 24 hours', ms: 86400e3, interval: 'hour' },
  yesterday: { label: 'Yesterday', interval: 'hour' },
  '7d': { label: 'Last 7 days', ms: 7 * 86400e3, interval: 'hour' },
  '30d': { label: 'Last 30 days', ms: 30 * 86400e3, interval: 'day' },
};

/** The [since, until] of a range name, in ms. */
export function rangeBounds(name) {
  const r = RANGES[name] || RANGES['24h'];
  if (name === 'yesterday') {
    const midnight = new Date(); midnight.setHours(0, 0, 0, 0);
    return [midnight.getTime() - 86400e3, midnight.getTime()];
  }
  const now = Date.now();
  return [now - r.ms, now];
}

export async function render(main, { query, signal }) {
  title('Overview');
  const range = RANGES[query.get('range')] ? query.get('range') : '24h';
  const team = query.get('team') || '';
  const [since, until] = rangeBounds(range);
  const base = { since: new Date(since).toISOString(), until: new Date(until).toISOString() };
  if (team) base.team = team;
  const s = session.current;
  const picker = select('range', Object.entries(RANGES).map(([k, v]) => [k, v.label]), range, {
    id: 'range',
    onchange: (e) => { const q = new URLSearchParams(location.search); q.set('range', e.target.value); navigate('/ui/?' + q); },
  });
  const controls = h('div', { class: 'row' }, h('label', { for: 'range' }, 'Time range', picker));
  const viewer = !s.admin && s.role === 'viewer';
  if (viewer && s.teams.length > 1) {
    controls.appendChild(field('Team', select('team', s.teams, team || s.teams[0], { onchange: (e) => { const q = new URLSearchParams(location.search); q.set('team', e.target.value); navigate('/ui/?' + q); } })));
    if (!team) base.team = s.teams[0];
  }
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  replace(main, h('div', { class: 'row' }, h('h1', null, 'Overview'), h('span', { class: 'spacer' }), controls),
    !s.admin && s.role === 'member' ? h('p', { class: 'muted' }, 'Your own requests: those made with your keys and your sign-ins.') : null, body);

  const interval = RANGES[range].interval;
  const group = (g) => api('/admin/usage', { query: { ...base, group_by: g }, signal });
  let totals, series, byProvider, byModel, byTeam, byKey, expensive;
  try {
    [totals, series, byProvider, byModel, byTeam, byKey, expensive] = await Promise.all([
      api('/admin/usage', { query: base, signal }),
      api('/admin/usage', { query: { ...base, interval }, signal }),
      group('provider'), group('model'),
      viewer ? Promise.resolve(null) : group('team'),
      group('key'),
      api('/admin/logs', { query: { ...base, sort: 'cost', limit: 10 }, signal }).catch(() => null),
    ]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(body, errorBox(e));
    return;
  }
  const t = totals.totals;
  const card = (label, value, sub) => h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'muted' }, sub) : null);
  const cards = h('div', { class: 'cards' },
    card('Requests', fmtInt(t.requests)),
    card('Errors', fmtInt(t.errors), t.requests ? fmtPct(t.errors / t.requests) + ' of requests' : null),
    card('Tokens', fmtInt(t.input_tokens + t.output_tokens), `${fmtInt(t.input_tokens)} in · ${fmtInt(t.output_tokens)} out`),
    card('Cost', fmtUsd(t.cost_usd), t.unpriced_requests ? `${fmtInt(t.unpriced_requests)} unpriced` : null),
    card('Cache hit ratio', fmtPct(t.cache_hit_ratio), `${fmtInt(t.cache_hits)} of ${fmtInt(t.cache_lookups)} lookups`),
    card('Latency p50', fmtMs(t.latency_ms.p50), `p95 ${fmtMs(t.latency_ms.p95)} · p99 ${fmtMs(t.latency_ms.p99)}`));

  const pts = (f) => series.data.map((r) => ({ t: Date.parse(r.bucket), values: f(r) }));
  const charts = h('div', { class: 'grid2' },
    lineChart({ title: 'Requests and errors', series: ['requests', 'errors'], points: pts((r) => [r.requests, r.errors]), format: (v) => fmtInt(Math.round(v)) }),
    lineChart({ title: 'Latency', series: ['p50', 'p95', 'p99'], points: pts((r) => [r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99]), format: fmtMs }),
    lineChart({ title: 'Cost', series: ['cost (USD)'], points: pts((r) => [r.cost_usd]), format: fmtUsd }),
    lineChart({ title: 'Tokens', series: ['input', 'output'], points: pts((r) => [r.input_tokens, r.output_tokens]), format: (v) => fmtInt(Math.round(v)) }));

  const top = (res, label, param) => {
    if (!res) return null;
    const rows = res.data.slice().sort((a, b) => b.requests - a.requests).slice(0, 10)
      .map((r) => ({ label: r.group, value: r.requests, detail: `${fmtUsd(r.cost_usd)} · ${fmtPct(r.requests ? r.errors / r.requests : 0)} err · p50 ${fmtMs(r.latency_ms.p50)}`, group: r.group }));
    return barList({ title: `By ${label}`, rows, format: fmtInt, onRow: (r) => { if (r.group) navigate(`/ui/logs?${param}=${encodeURIComponent(r.group)}&since=${encodeURIComponent(base.since)}&until=${encodeURIComponent(base.until)}`); } });
  };
  const breakdowns = h('div', { class: 'grid2' }, top(byProvider, 'provider', 'provider'), top(byModel, 'model', 'model'), top(byTeam, 'team', 'team'), top(byKey, 'key', 'key'));

  let costly = null;
  if (expensive && expensive.data) {
    costly = h('div', { class: 'panel' }, h('h3', null, 'Most expensive requests'),
      expensive.data.length ? h('table', null,
        h('thead', null, h('tr', null, ['Time', 'Request', 'Model', 'Key', 'Status', 'Tokens', 'Cost'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, expensive.data.map((r) => h('tr', null,
          h('td', null, new Date(r.time).toLocaleString()),
          h('td', null, link('/ui/logs/' + r.id, tail(r.id))),
          h('td', null, r.model || r.requested_model || '—'),
          h('td', null, r.key_id || '—'),
          h('td', null, statusBadge(r.status)),
          h('td', { class: 'num' }, fmtInt(r.input_tokens + r.output_tokens)),
          h('td', { class: 'num' }, fmtUsd(r.cost_usd)))))) : h('p', { class: 'empty' }, 'No priced requests in this range.'),
      h('p', null, link(`/ui/logs?sort=cost&since=${encodeURIComponent(base.since)}&until=${encodeURIComponent(base.until)}`, 'All requests of this range by cost')));
  }
  replace(body, cards, costly, charts, breakdowns);
}
