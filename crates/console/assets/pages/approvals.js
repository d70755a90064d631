// The approvals queue: tool calls held for an admin's decision, newest first, filtered by status
// (pending by default). Each shows the tool, its arguments (as text), who asked and in which
// session; pending ones can be approved or denied. The list refreshes every 5 seconds while the
// page is open (one request in flight at most).
import { api, h, replace, navigate, errorBox, toast, select, fmtTime, title, tail, ApiError } from '../lib.js';

const STATUSES = [['pending', 'Pending'], ['approved', 'Approved'], ['denied', 'Denied'], ['expired', 'Expired'], ['used', 'Used'], ['all', 'Any status']];
const REFRESH_MS = 5000;

function badge(status) {
  const kind = status === 'pending' ? 'warn' : status === 'approved' || status === 'used' ? 'ok' : 'err';
  return h('span', { class: 'badge ' + kind }, status);
}

function argumentsText(a) {
  if (typeof a === 'string') return a;
  try { return JSON.stringify(a, null, 2); } catch { return String(a); }
}

function identityText(id) {
  if (!id || typeof id !== 'object') return '—';
  const parts = [];
  for (const k of ['user', 'team', 'key_id', 'subject', 'role', 'auth_method']) {
    if (id[k]) parts.push(`${k.replace('_', ' ')} ${id[k]}`);
  }
  return parts.length ? parts.join(' · ') : '—';
}

export async function render(main, { query, signal }) {
  title('Approvals');
  const status = STATUSES.some(([s]) => s === query.get('status')) ? query.get('status') : 'pending';
  const picker = select('status', STATUSES, status, {
    id: 'approval-status',
    onchange: (e) => navigate('/ui/approvals' + (e.target.value === 'pending' ? '' : '?status=' + e.target.value)),
  });
  const notices = h('div');
  const list = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const stamp = h('span', { class: 'muted' });
  replace(main,
    h('div', { class: 'row page-head' }, h('h1', null, 'Approvals'), h('span', { class: 'spacer' }),
      h('label', { for: 'approval-status' }, 'Status', picker)),
    h('p', { class: 'muted' }, 'Tool calls a policy holds for approval. An approved call proceeds when the agent repeats its request; a denied one is refused. ', stamp),
    notices, list);

  const busy = new Set(); // ids being decided
  let inFlight = false;
  let again = false; // a refresh asked for while one was in flight
  let timer = null;
  let shown = [];

  async function decide(a, decision, buttons) {
    busy.add(a.id);
    buttons.forEach((b) => { b.disabled = true; });
    notices.replaceChildren();
    try {
      await api('/admin/approvals/' + encodeURIComponent(a.id), { method: 'POST', body: { decision } });
      toast(`${a.tool}: ${decision === 'approve' ? 'approved' : 'denied'}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        notices.appendChild(errorBox(new Error(`The call of ${a.tool} (${a.id}) was already decided, used or expired: ${e.message}`)));
      } else {
        notices.appendChild(errorBox(e));
      }
    } finally {
      busy.delete(a.id);
    }
    refresh();
  }

  function card(a) {
    const approve = h('button', { type: 'button', class: 'primary', 'aria-label': `Approve ${a.tool} ${a.id}` }, 'Approve');
    const deny = h('button', { type: 'button', class: 'danger', 'aria-label': `Deny ${a.tool} ${a.id}` }, 'Deny');
    const buttons = [approve, deny];
    approve.addEventListener('click', () => decide(a, 'approve', buttons));
    deny.addEventListener('click', () => decide(a, 'deny', buttons));
    if (busy.has(a.id)) buttons.forEach((b) => { b.disabled = true; });
    const rows = [
      ['Identity', identityText(a.identity)],
      ['Session', a.session || '—'],
      ['Created', fmtTime(a.created_at)],
      ['Expires', fmtTime(a.expires_at)],
      a.decided_at ? ['Decided', `${fmtTime(a.decided_at)}${a.decided_by ? ' by ' + a.decided_by : ''}`] : null,
      a.used_at ? ['Used', fmtTime(a.used_at)] : null,
      a.reason ? ['Reason', a.reason] : null,
    ].filter(Boolean);
    return h('article', { class: 'panel', 'aria-label': `Approval ${a.id}`, dataset: { id: a.id } },
      h('h3', null, h('span', { class: 'mono' }, a.tool), ' ', badge(a.status), ' ', h('span', { class: 'muted mono', title: a.id }, tail(a.id))),
      h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
      h('h4', null, 'Arguments', a.arguments_truncated ? ' (truncated)' : ''),
      h('pre', null, argumentsText(a.arguments)),
      a.status === 'pending' ? h('div', { class: 'row' }, approve, deny) : null);
  }

  function draw(data) {
    shown = data;
    if (!data.length) {
      replace(list, h('p', { class: 'empty' }, status === 'pending' ? 'No call awaits a decision.' : 'No approval with this status.'));
      return;
    }
    replace(list, data.map(card));
  }

  async function refresh() {
    if (signal.aborted) return;
    if (inFlight) { again = true; return; }
    if (timer) { clearTimeout(timer); timer = null; }
    inFlight = true;
    try {
      const res = await api('/admin/approvals', { query: { status: status === 'all' ? undefined : status, limit: 100 }, signal });
      const data = res.data || [];
      // Redraw only when something changed, so a reader's place and selection stay.
      const key = (xs) => xs.map((a) => a.id + a.status).join();
      if (key(data) !== key(shown) || !list.querySelector('article, .empty')) draw(data);
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()}${res.next_cursor ? ' · showing the newest 100' : ''}.`;
    } catch (e) {
      if (e.name === 'AbortError') return;
      replace(list, errorBox(e));
      shown = [];
    } finally {
      inFlight = false;
    }
    if (signal.aborted) return;
    if (again) { again = false; refresh(); return; }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  signal.addEventListener('abort', () => { if (timer) clearTimeout(timer); timer = null; });
  await refresh();
}
