// The request log: filters that live in the page's URL (so a filtered view can be shared),
// keyset pagination with the API's cursor, each row linking to its record, and a live tail
// that polls for newer records (one request in flight at most, paused while the tab is
// hidden).
import { api, h, replace, navigate, link, table, errorBox, fmtInt, fmtUsd, fmtMs, statusBadge, tail, title, select, session } from '../lib.js';

/** Filters the page offers: [query name, label, kind]. */
const FILTERS = [
  ['model', 'Model (served)', 'text'],
  ['requested_model', 'Model (requested)', 'text'],
  ['provider', 'Provider', 'text'],
  ['status', 'Status', 'text'],
  ['route', 'Route', 'text'],
  ['user', 'User', 'text'],
  ['team', 'Team', 'text'],
  ['key', 'Key id', 'text'],
  ['cache', 'Cache', 'cache'],
  ['endpoint', 'Endpoint', 'endpoint'],
];
const PASSED = ['since', 'until', 'cursor', 'sort', ...FILTERS.map((f) => f[0])];

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The API query of the page's URL. */
function apiQuery(query) {
  const q = { limit: 50 };
  for (const k of PASSED) if (query.get(k)) q[k] = query.get(k);
  const meta = query.get('metadata');
  if (meta && meta.includes('=')) {
    const [k, ...v] = meta.split('=');
    q['metadata.' + k.trim()] = v.join('=').trim();
  }
  return q;
}

const COLUMNS = [
  { label: 'Time', value: (r) => new Date(r.time).toLocaleString() },
  { label: 'Request', value: (r) => link('/ui/logs/' + r.id, h('span', { class: 'mono', title: r.id }, tail(r.id))) },
  { label: 'Endpoint', value: (r) => r.endpoint },
  { label: 'Model', value: (r) => r.model || r.requested_model || '—' },
  { label: 'Provider', value: (r) => r.provider || '—' },
  { label: 'Key', value: (r) => r.key_id || r.subject || '—' },
  { label: 'Team', value: (r) => r.team || '—' },
  { label: 'Status', value: (r) => statusBadge(r.status) },
  { label: 'Latency', value: (r) => fmtMs(r.latency_ms), num: true },
  { label: 'Tokens', value: (r) => fmtInt(r.input_tokens + r.output_tokens), num: true },
  { label: 'Cost', value: (r) => fmtUsd(r.cost_usd), num: true },
  { label: 'Cache', value: (r) => r.cache_status || '—' },
];

/** What a non-admin sees of the log, said above it. */
function scopeNote(s) {
  if (s.admin) return null;
  if (s.role === 'member') return h('p', { class: 'muted' }, 'You see your own requests: those made with your keys and your sign-ins.');
  return h('p', { class: 'muted' }, `You see the requests of your team${s.teams.length > 1 ? 's' : ''}: ${s.teams.join(', ')}.`);
}

export async function render(main, { query, signal }) {
  title('Logs');
  const s = session.current;
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the request log' });
  const inputs = {};
  const row = h('div', { class: 'row' });
  inputs.since = h('input', { type: 'datetime-local', name: 'since', value: toLocalInput(query.get('since')) });
  inputs.until = h('input', { type: 'datetime-local', name: 'until', value: toLocalInput(query.get('until')) });
  row.append(h('label', null, 'From', inputs.since), h('label', null, 'To', inputs.until));
  for (const [name, label, kind] of FILTERS) {
    let control;
    if (kind === 'cache') control = select(name, [['', 'any'], ['hit', 'hit'], ['miss', 'miss'], ['bypass', 'bypass']], query.get(name));
    else if (kind === 'endpoint') control = select(name, [['', 'any'], 'chat_completions', 'messages', 'embeddings', 'responses', 'count_tokens', 'mcp', 'passthrough'], query.get(name));
    else control = h('input', { type: 'text', name, value: query.get(name) || '', placeholder: name === 'status' ? '429 or 5xx' : '' });
    inputs[name] = control;
    row.append(h('label', null, label, control));
  }
  inputs.metadata = h('input', { type: 'text', name: 'metadata', value: query.get('metadata') || '', placeholder: 'key=value' });
  inputs.sort = select('sort', [['', 'Newest first'], ['cost', 'Most expensive first']], query.get('sort'));
  row.append(h('label', { class: 'wide' }, 'Metadata', inputs.metadata), h('label', null, 'Order', inputs.sort));
  const live = h('input', { type: 'checkbox', id: 'live-tail', checked: query.get('live') === '1' });
  row.append(h('button', { type: 'submit', class: 'primary' }, 'Apply'),
    h('button', { type: 'button', onclick: () => navigate('/ui/logs') }, 'Clear'),
    h('label', { class: 'inline', for: 'live-tail' }, live, 'Live tail'));
  form.append(row);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) {
      let v = el.value.trim();
      if (!v) continue;
      if (k === 'since' || k === 'until') v = new Date(v).toISOString();
      q.set(k, v);
    }
    if (live.checked) q.set('live', '1');
    navigate('/ui/logs' + (q.toString() ? '?' + q : ''));
  });

  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('div', { class: 'pager' });
  replace(main, h('h1', null, 'Request logs'), scopeNote(s), form, results, pager);

  const q = apiQuery(query);
  if (!s.admin && s.role === 'viewer' && !q.team && s.teams.length) q.team = s.teams[0];
  let page;
  const started = performance.now();
  try {
    page = await api('/admin/logs', { query: q, signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e));
    return;
  }
  let rows = page.data;
  const open = (r) => navigate('/ui/logs/' + r.id);
  const draw = () => replace(results, table(COLUMNS, rows, { onRow: open, empty: 'No request matches these filters.', caption: 'Request log' }));
  draw();
  replace(pager,
    query.get('cursor') ? h('button', { type: 'button', onclick: () => { const n = new URLSearchParams(location.search); n.delete('cursor'); navigate('/ui/logs?' + n); } }, 'Newest') : null,
    page.next_cursor ? h('button', { type: 'button', onclick: () => { const n = new URLSearchParams(location.search); n.set('cursor', page.next_cursor); navigate('/ui/logs?' + n); } }, 'Older') : null,
    h('span', { class: 'muted' }, `${rows.length} record${rows.length === 1 ? '' : 's'} · ${Math.round(performance.now() - started)} ms`));

  // Live tail: newer records of the same filters, prepended; the newest page only.
  let timer = null;
  const poll = async () => {
    timer = null;
    if (signal.aborted || !live.checked) return;
    if (!document.hidden) {
      const newest = rows.length ? rows[0].time : new Date(Date.now() - 60e3).toISOString();
      try {
        const fresh = await api('/admin/logs', { query: { ...q, cursor: undefined, sort: undefined, since: newest }, signal });
        const seen = new Set(rows.map((r) => r.id));
        const add = fresh.data.filter((r) => !seen.has(r.id));
        if (add.length) { rows = add.concat(rows).slice(0, 200); draw(); }
      } catch (e) { if (e.name === 'AbortError') return; }
    }
    if (!signal.aborted && live.checked) timer = setTimeout(poll, 2000);
  };
  live.addEventListener('change', () => { if (live.checked && !timer) poll(); });
  signal.addEventListener('abort', () => { if (timer) clearTimeout(timer); });
  if (live.checked && !query.get('cursor') && !query.get('sort')) timer = setTimeout(poll, 2000);
}
