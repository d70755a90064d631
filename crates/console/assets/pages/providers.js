// Providers and routes: every configured provider (kind, host, models, whether it has a
// credential — never the credential), every route with its targets in order and its retry and
// time limits, and their health: the circuit breakers and the last hour's requests, error rate
// and latency per provider.
import { api, h, replace, table, errorBox, fmtInt, fmtMs, fmtPct, title, link } from '../lib.js';

const HOUR = 3600e3;

function badge(text, kind) {
  return h('span', { class: 'badge ' + kind }, text);
}

function breakerBadge(state) {
  if (state === 'open') return badge('open', 'err');
  if (state === 'half_open' || state === 'half-open') return badge('half open', 'warn');
  return badge(state || 'closed', 'ok');
}

/** "3 attempts · 250 ms exponential backoff, at most 10 s · jitter". */
function retryText(r) {
  if (!r) return '—';
  if (r.max_attempts <= 1) return 'no retries';
  return `${r.max_attempts} attempts · ${fmtMs(r.delay_ms)} ${r.backoff} backoff, at most ${fmtMs(r.max_delay_ms)}${r.jitter ? ' · jitter' : ''}`;
}

function timeoutsText(t) {
  if (!t) return '—';
  const parts = [];
  parts.push('first byte ' + (t.first_byte_ms ? fmtMs(t.first_byte_ms) : 'none'));
  parts.push('total ' + (t.total_ms ? fmtMs(t.total_ms) : 'none'));
  return parts.join(' · ');
}

function modelsOf(p) {
  const out = [];
  for (const m of p.models || []) out.push(m);
  for (const d of p.deployments || []) out.push(`${d.model} → ${d.deployment}`);
  for (const m of p.responses_models || []) if (!out.includes(m)) out.push(m + ' (responses)');
  return out;
}

export async function render(main, { signal }) {
  title('Providers & routes');
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const refresh = h('button', { type: 'button', onclick: () => load() }, 'Refresh');
  replace(main, h('div', { class: 'row page-head' }, h('h1', null, 'Providers & routes'), h('span', { class: 'spacer' }), refresh), body);

  async function load() {
    refresh.disabled = true;
    const now = Date.now();
    const since = new Date(now - HOUR).toISOString();
    const until = new Date(now).toISOString();
    let providers, routes, breakers, usage;
    try {
      [providers, routes, breakers, usage] = await Promise.all([
        api('/admin/providers', { signal }),
        api('/admin/routes', { signal }),
        api('/admin/circuit-breakers', { signal }),
        api('/admin/usage', { query: { group_by: 'provider', since, until }, signal }).catch((e) => ({ error: e })),
      ]);
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(body, errorBox(e));
      refresh.disabled = false;
      return;
    }
    refresh.disabled = false;
    replace(body, ...draw(providers, routes, breakers, usage, since, until));
  }

  await load();
}

function draw(providers, routes, breakers, usage, since, until) {
  const usageBy = new Map();
  if (usage && usage.data) for (const r of usage.data) usageBy.set(r.group, r);
  const breakersBy = new Map();
  for (const b of breakers.data || []) {
    const provider = String(b.target).split('/')[0];
    if (!breakersBy.has(provider)) breakersBy.set(provider, []);
    breakersBy.get(provider).push(b);
  }
  const logsOf = (provider) => `/ui/logs?provider=${encodeURIComponent(provider)}&since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`;

  const providerCols = [
    { label: 'Provider', value: (p) => h('strong', null, p.name) },
    { label: 'Kind', value: (p) => p.kind },
    { label: 'Host', value: (p) => h('span', { class: 'mono' }, p.host || '—') },
    { label: 'Models', wrap: true, value: (p) => { const m = modelsOf(p); return m.length ? m.join(', ') : h('span', { class: 'muted' }, 'well-known names of its kind'); } },
    { label: 'Credentials', value: (p) => (p.has_credentials ? badge('yes · ' + p.credential_type.replace('_', ' '), 'ok') : badge(p.credentials_optional ? 'none needed' : 'none', p.credentials_optional ? 'ok' : 'warn')) },
    { label: 'Headers', wrap: true, value: (p) => (p.headers && p.headers.length ? p.headers.join(', ') : '—') },
    { label: 'Requests (1 h)', num: true, value: (p) => { const u = usageBy.get(p.name); return u ? link(logsOf(p.name), fmtInt(u.requests)) : '0'; } },
    { label: 'Error rate', num: true, value: (p) => { const u = usageBy.get(p.name); if (!u || !u.requests) return '—'; const r = u.errors / u.requests; return badge(fmtPct(r), r >= 0.2 ? 'err' : r > 0 ? 'warn' : 'ok'); } },
    { label: 'Latency p50 / p95', num: true, value: (p) => { const u = usageBy.get(p.name); return u && u.requests ? `${fmtMs(u.latency_ms.p50)} / ${fmtMs(u.latency_ms.p95)}` : '—'; } },
    { label: 'Breakers', value: (p) => {
      const bs = breakersBy.get(p.name) || [];
      const open = bs.filter((b) => b.state === 'open').length;
      const half = bs.filter((b) => b.state !== 'open' && b.state !== 'closed').length;
      if (open) return badge(`${open} open`, 'err');
      if (half) return badge(`${half} half open`, 'warn');
      return badge('closed', 'ok');
    } },
  ];

  const providerPanel = h('section', { 'aria-labelledby': 'providers-h' },
    h('h2', { id: 'providers-h' }, 'Providers'),
    h('p', { class: 'muted' }, 'In the order bare model names are resolved. Credentials are never shown; only whether one is configured. Traffic is the last hour’s.'),
    usage && usage.error ? errorBox(usage.error) : null,
    table(providerCols, providers.data || [], { empty: 'No provider is configured.', caption: 'Providers' }));

  const breakerCols = [
    { label: 'Target', value: (b) => h('span', { class: 'mono' }, b.target) },
    { label: 'State', value: (b) => breakerBadge(b.state) },
    { label: 'Consecutive failures', num: true, value: (b) => fmtInt(b.consecutive_failures) },
    { label: 'Times opened', num: true, value: (b) => fmtInt(b.times_opened) },
    { label: 'Retry in', num: true, value: (b) => (b.retry_in_ms === null || b.retry_in_ms === undefined ? '—' : fmtMs(b.retry_in_ms)) },
    { label: 'Latency (avg)', num: true, value: (b) => (b.latency_ewma_ms === null || b.latency_ewma_ms === undefined ? '—' : fmtMs(b.latency_ewma_ms)) },
  ];
  const breakerPanel = h('section', { 'aria-labelledby': 'breakers-h' },
    h('h2', { id: 'breakers-h' }, 'Circuit breakers'),
    h('p', { class: 'muted' }, `A target's breaker opens after ${fmtInt(breakers.failure_threshold)} consecutive failures and sheds its traffic for ${fmtMs(breakers.open_for_ms)}. Only targets that have failed since the gateway started are listed.`),
    table(breakerCols, breakers.data || [], { empty: 'No target has failed: every breaker is closed.', caption: 'Circuit breakers' }));

  const targetList = (r) => h('ol', { class: 'targets' }, r.targets.map((t) => h('li', null,
    h('span', { class: 'mono' }, `${t.provider}/${t.model}`),
    r.strategy === 'weighted' ? ` · weight ${t.weight}` : '',
    ' · ', t.role === 'primary' ? 'primary' : 'fallback')));
  const routeCols = [
    { label: 'Route', value: (r) => h('strong', null, r.name) },
    { label: 'Targets (in order)', wrap: true, value: targetList },
    { label: 'Strategy', value: (r) => r.strategy },
    { label: 'Retries', wrap: true, value: (r) => retryText(r.retry) },
    { label: 'Time limits', wrap: true, value: (r) => timeoutsText(r.timeouts) },
    { label: 'Denied tools', wrap: true, value: (r) => (r.tools_denied.length ? r.tools_denied.join(', ') : '—') },
    { label: 'Aliases', value: (r) => (r.aliases.length ? r.aliases.join(', ') : '—') },
  ];
  const routePanel = h('section', { 'aria-labelledby': 'routes-h' },
    h('h2', { id: 'routes-h' }, 'Routes'),
    table(routeCols, routes.data || [], { empty: 'No route is configured: callers name provider/model or a well-known model.', caption: 'Routes' }),
    h('p', { class: 'muted' }, `Requests that name no route: ${routes.default.strategy} · ${retryText(routes.default.retry)} · ${timeoutsText(routes.default.timeouts)}.`));

  const aliases = routes.aliases || [];
  const aliasPanel = aliases.length ? h('section', { 'aria-labelledby': 'aliases-h' },
    h('h2', { id: 'aliases-h' }, 'Aliases'),
    table([
      { label: 'Alias', value: (a) => h('span', { class: 'mono' }, a.alias) },
      { label: 'Resolves to', value: (a) => h('span', { class: 'mono' }, a.target) },
    ], aliases, { caption: 'Aliases' })) : null;

  return [providerPanel, breakerPanel, routePanel, aliasPanel];
}
