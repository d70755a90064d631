// One request-log record at its own URL: who, what, how it went, every upstream attempt with
// its timing, tokens and cost, the caller's metadata and the stored bodies (shown as text,
// never interpreted).
import { api, h, replace, link, errorBox, fmtInt, fmtUsd, fmtMs, statusBadge, title } from '../lib.js';

function pretty(text) {
  if (text === null || text === undefined) return null;
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

export async function render(main, { params, signal }) {
  const id = params[0];
  title('Request ' + id.slice(-12));
  replace(main, h('p', null, link('/ui/logs', '← Logs')), h('h1', null, 'Request ', h('span', { class: 'mono' }, id)), h('p', { class: 'muted' }, 'Loading…'));
  let r;
  try {
    r = await api('/admin/logs/' + encodeURIComponent(id), { signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    main.lastChild.replaceWith(errorBox(e));
    return;
  }
  let attempts = [];
  try { attempts = r.attempt_log ? JSON.parse(r.attempt_log) : []; } catch { attempts = []; }
  let metadata = null;
  try { metadata = r.metadata ? JSON.parse(r.metadata) : null; } catch { metadata = null; }

  const summary = h('div', { class: 'grid2' },
    h('div', { class: 'panel' }, h('h2', null, 'Request'), kv([
      ['Time', new Date(r.time).toLocaleString() + ` (${r.time})`],
      ['Endpoint', `${r.endpoint} (${r.dialect})`],
      ['Status', statusBadge(r.status)],
      ['Error', r.error_message ? `${r.error_type || 'error'}: ${r.error_message}` : null],
      ['Requested model', r.requested_model],
      ['Route', r.route],
      ['Served by', r.provider ? `${r.provider} / ${r.model || '?'}` : null],
      ['Stream', r.stream ? 'yes' : 'no'],
      ['Cache', r.cache_status],
      ['Session', r.session_id],
      ['Agent', r.agent],
    ])),
    h('div', { class: 'panel' }, h('h2', null, 'Caller'), kv([
      ['Subject', r.subject],
      ['Authenticated with', r.auth_method],
      ['User', r.user],
      ['Team', r.team],
      ['Key', r.key_id],
      ['Provider key', r.provider_key_id],
    ])),
    h('div', { class: 'panel' }, h('h2', null, 'Timing'), kv([
      ['Latency', fmtMs(r.latency_ms)],
      ['Time to first token', r.ttft_ms !== null && r.ttft_ms !== undefined ? fmtMs(r.ttft_ms) : null],
      ['Attempts', fmtInt(r.attempts)],
    ])),
    h('div', { class: 'panel' }, h('h2', null, 'Tokens and cost'), kv([
      ['Input tokens', fmtInt(r.input_tokens)],
      ['Output tokens', fmtInt(r.output_tokens)],
      ['Cached input tokens', fmtInt(r.cached_tokens)],
      ['Reasoning tokens', fmtInt(r.reasoning_tokens)],
      ['Cost', fmtUsd(r.cost_usd)],
      ['List price', r.list_cost_usd !== null && r.list_cost_usd !== undefined ? fmtUsd(r.list_cost_usd) : null],
      ['Caller\'s price', r.custom_cost_usd !== null && r.custom_cost_usd !== undefined ? fmtUsd(r.custom_cost_usd) : null],
    ])));

  const attemptTable = h('div', null, h('h2', null, 'Upstream attempts'),
    attempts.length ? h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, ['#', 'Target', 'Status', 'Error', 'Latency'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, attempts.map((a, i) => h('tr', null,
        h('td', null, String(i + 1)), h('td', null, a.target || '—'), h('td', null, a.status ? statusBadge(a.status) : '—'),
        h('td', { class: 'wrap' }, a.error || ''), h('td', { class: 'num' }, a.latency_ms !== undefined ? fmtMs(a.latency_ms) : '—')))))) : h('p', { class: 'muted' }, 'No upstream attempt was recorded (answered by the gateway or its cache).'));

  const meta = h('div', null, h('h2', null, 'Metadata'),
    metadata && typeof metadata === 'object' ? kv(Object.entries(metadata).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])) : h('p', { class: 'muted' }, r.metadata || 'None.'));

  const bodies = h('div', null, h('h2', null, 'Bodies'),
    r.request_body || r.response_body ? [
      h('h3', null, 'Request'), r.request_body ? h('pre', null, pretty(r.request_body)) : h('p', { class: 'muted' }, 'Not stored.'),
      h('h3', null, 'Response'), r.response_body ? h('pre', null, pretty(r.response_body)) : h('p', { class: 'muted' }, 'Not stored.'),
    ] : h('p', { class: 'muted' }, 'Bodies are not stored for this request (log.bodies is off).'));

  replace(main, h('p', null, link('/ui/logs', '← Logs')), h('h1', null, 'Request ', h('span', { class: 'mono' }, r.id)), summary, attemptTable, meta, bodies);
}
