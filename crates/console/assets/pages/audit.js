// The decision audit: one record per agent turn, newest first — what tools were offered,
// hidden and withheld, the decision on each call and the rule behind it, which tool's output
// tainted the context — filtered by session and time (in the page's URL), a page at a time;
// a session links to its own records. "Verify chain" checks every stored chain for records
// changed, removed or reordered.
import { api, h, replace, navigate, table, errorBox, toast, dialog, fmtTime, fmtInt, fmtMs, title, tail, ApiError } from '../lib.js';

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function badge(text, kind) {
  return h('span', { class: 'badge ' + kind }, text);
}

const DECISION_KIND = { allow: 'ok', withheld: 'err', refused: 'err', held: 'warn' };

/** The decisions on the record's calls: "allow read_email", "withheld send_money"… */
function decisions(r) {
  const calls = r.calls || [];
  if (!calls.length) return h('span', { class: 'muted' }, 'no tool call');
  return h('ul', { class: 'plain' }, calls.map((c) => h('li', { title: c.reason || '' }, badge(c.decision, DECISION_KIND[c.decision] || 'warn'), ' ', h('span', { class: 'mono' }, c.tool))));
}

/** The rules that fired: on calls and on hidden tools, each once. */
function rules(r) {
  const out = [];
  for (const c of r.calls || []) if (c.rule && !out.includes(c.rule)) out.push(c.rule);
  for (const t of r.tools_hidden || []) if (t.rule && !out.includes(t.rule)) out.push(t.rule);
  return out.length ? h('ul', { class: 'plain mono' }, out.map((x) => h('li', null, x))) : '—';
}

function names(xs) {
  if (!xs || !xs.length) return '—';
  return h('ul', { class: 'plain mono' }, xs.map((x) => h('li', null, typeof x === 'string' ? x : x.tool)));
}

function who(r) {
  const i = r.identity || {};
  const id = i.user || i.key_id || i.subject;
  return id ? h('span', { class: 'mono', title: id }, tail(id, 16)) : '—';
}

function showRecord(r) {
  dialog('Audit record ' + tail(r.id), h('div', null,
    h('p', { class: 'mono' }, r.id),
    h('pre', null, JSON.stringify(r, null, 2))));
}

export async function render(main, { query, signal }) {
  title('Audit trail');
  const inputs = {
    session: h('input', { type: 'text', name: 'session', id: 'audit-session', value: query.get('session') || '' }),
    since: h('input', { type: 'datetime-local', name: 'since', id: 'audit-since', value: toLocalInput(query.get('since')) }),
    until: h('input', { type: 'datetime-local', name: 'until', id: 'audit-until', value: toLocalInput(query.get('until')) }),
  };
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the audit trail' },
    h('div', { class: 'row' },
      h('label', { for: 'audit-session', class: 'wide' }, 'Session', inputs.session),
      h('label', { for: 'audit-since' }, 'From', inputs.since),
      h('label', { for: 'audit-until' }, 'To', inputs.until),
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('button', { type: 'button', onclick: () => navigate('/ui/audit') }, 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) {
      let v = el.value.trim();
      if (!v) continue;
      if (k !== 'session') v = new Date(v).toISOString();
      q.set(k, v);
    }
    navigate('/ui/audit' + (q.toString() ? '?' + q : ''));
  });

  const verifyButton = h('button', { type: 'button', onclick: () => verify() }, 'Verify chain');
  const verifyResult = h('div', { role: 'status', 'aria-live': 'polite' });
  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('div', { class: 'pager' });
  replace(main,
    h('div', { class: 'row page-head' }, h('h1', null, 'Audit trail'), h('span', { class: 'spacer' }), verifyButton),
    verifyResult, form, results, pager);

  async function verify() {
    verifyButton.disabled = true;
    replace(verifyResult, h('p', { class: 'muted' }, 'Verifying every chain…'));
    try {
      const v = await api('/admin/audit/verify', { method: 'POST', signal });
      if (v.intact) {
        replace(verifyResult, h('div', { class: 'notice ok-notice' }, badge('intact', 'ok'), ` The audit is intact: ${fmtInt(v.records)} record${v.records === 1 ? '' : 's'} in ${fmtInt(v.chains)} chain${v.chains === 1 ? '' : 's'} verified (${fmtMs(v.elapsed_ms)}).`));
        toast('The audit chain is intact');
      } else {
        replace(verifyResult, h('div', { class: 'error-box', role: 'alert' },
          h('p', null, h('strong', null, 'The audit is NOT intact. '), 'First bad record: ', h('span', { class: 'mono' }, v.first_bad_record || '?')),
          h('ul', null, (v.bad || []).map((b) => h('li', null, `chain ${b.chain}, record ${b.seq} (`, h('span', { class: 'mono' }, b.id), `): ${b.fault} — ${b.reason}`))),
          h('p', null, `${fmtInt(v.records)} record${v.records === 1 ? '' : 's'} verified in the intact chains.`)));
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(verifyResult, errorBox(e instanceof ApiError && e.status === 409 ? new Error('A verification is already running: try again when it is done.') : e));
    } finally {
      verifyButton.disabled = false;
    }
  }

  const q = { limit: 50 };
  for (const k of ['session', 'since', 'until', 'cursor']) if (query.get(k)) q[k] = query.get(k);
  let page;
  try {
    page = await api('/admin/audit', { query: q, signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e));
    return;
  }
  const bySession = (s) => { const n = new URLSearchParams(); n.set('session', s); navigate('/ui/audit?' + n); };
  const cols = [
    { label: 'Time', value: (r) => fmtTime(r.time || r.ts_ms) },
    { label: 'Session', value: (r) => (r.session ? h('button', { type: 'button', class: 'small linkish', title: 'Show this session’s records', 'aria-label': `Filter by session ${r.session}`, onclick: () => bySession(r.session) }, r.session) : '—') },
    { label: 'Path', value: (r) => r.path || '—' },
    { label: 'Caller', value: who },
    { label: 'Decision', value: decisions },
    { label: 'Offered', value: (r) => names(r.tools_offered) },
    { label: 'Hidden', value: (r) => names(r.tools_hidden) },
    { label: 'Withheld', value: (r) => names(r.tools_withheld) },
    { label: 'Tainted by', value: (r) => (r.trust && r.trust.tainted_by ? h('span', { class: 'mono' }, r.trust.tainted_by.tool) : r.trust && r.trust.tainted ? 'yes' : '—') },
    { label: 'Rule', value: rules },
    { label: '', value: (r) => h('button', { type: 'button', class: 'small', 'aria-label': `Details of record ${r.id}`, onclick: () => showRecord(r) }, 'Details') },
  ];
  replace(results,
    query.get('session') ? h('p', null, 'Records of session ', h('span', { class: 'mono' }, query.get('session')), '.') : null,
    table(cols, page.data || [], { empty: 'No audit record matches these filters.', caption: 'Audit records' }));
  replace(pager,
    query.get('cursor') ? h('button', { type: 'button', onclick: () => { const n = new URLSearchParams(location.search); n.delete('cursor'); navigate('/ui/audit?' + n); } }, 'Newest') : null,
    page.next_cursor ? h('button', { type: 'button', onclick: () => { const n = new URLSearchParams(location.search); n.set('cursor', page.next_cursor); navigate('/ui/audit?' + n); } }, 'Older') : null,
    h('span', { class: 'muted' }, `${(page.data || []).length} record${(page.data || []).length === 1 ? '' : 's'}`));
}
