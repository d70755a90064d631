// Virtual keys: the list (filtered by team, user or service account, in the page's URL), a
// key's requests in the log, and creating, editing, rotating and revoking keys. A new or
// rotated secret is shown once, with a snippet that points an OpenAI client at this gateway.
// A member sees and manages its own keys only, and creates keys for itself in its own teams.
import { api, h, replace, navigate, link, table, errorBox, fmtUsd, tail, title, select, dialog, confirmAction, toast, session } from '../lib.js';
import { input, labelled, parseList, showList, dateToIso, isoToDate, actionForm, heading, smallButton, act, secretDialog, snippet, when, limitFields, limitsOf, budgetOf, limitsText } from './_access.js';

const FILTERS = [['team', 'Team'], ['user', 'User'], ['service_account', 'Service account']];

/** Whether the session manages only its own keys (a member). */
const ownOnly = () => !session.current.admin;

/** Who a key belongs to, as text. */
function owner(k) {
  const parts = [];
  if (k.user) parts.push(`user ${k.user}`);
  if (k.team) parts.push(`team ${k.team}`);
  if (k.service_account) parts.push(`service account ${k.service_account}`);
  return parts.length ? parts.join(' · ') : 'unbound';
}

function statusOf(k) {
  const cls = k.status === 'active' ? 'ok' : k.status === 'expired' ? 'warn' : 'err';
  return h('span', { class: 'badge ' + cls }, k.status);
}

/** The snippet that points an OpenAI client at this gateway with `key`. */
function keySnippet(key) {
  return snippet('Use it', `OPENAI_BASE_URL=${location.origin}/v1\nOPENAI_API_KEY=${key}`);
}

/** The fields a key's settings take, filled from `k` (a key view) when editing. */
function settingsFields(k = {}) {
  const limits = limitFields(k);
  const f = {
    name: input('name', { required: true, maxlength: 200, value: k.name || '', autocomplete: 'off' }),
    models: input('models', { value: showList(k.models), placeholder: 'gpt-4o, openai/*' }),
    expires_at: input('expires_at', { type: 'date', value: isoToDate(k.expires_at) }),
    ...limits.f,
    tools_denied: input('tools_denied', { value: showList(k.tools_denied), placeholder: 'shell_*, delete_*' }),
    tools: input('tools', { value: showList(k.tools), placeholder: 'github__*, fs__read_*' }),
  };
  const layout = [
    labelled('Name', f.name),
    labelled('Models', f.models, 'Comma list of models or routes (a * suffix for prefixes); empty allows every model.'),
    labelled('Expires on', f.expires_at, 'The key stops working at the end of this day; empty never.'),
    ...limits.layout,
    labelled('Denied tools', f.tools_denied, 'Comma list of tool-name globs whose calls are withheld from answers.'),
    labelled('MCP tools', f.tools, 'Comma list of globs over <server>__<tool> the key may use; empty allows every tool.'),
  ];
  return { f, layout };
}

function createDialog(refresh) {
  const { f, layout } = settingsFields();
  const member = ownOnly();
  const teams = session.current.teams || [];
  const user = input('user', { placeholder: 'user id or e-mail' });
  const team = member
    ? select('team', [['', 'none'], ...teams.map((t) => [t, t])], '', { id: 'f-team-own' })
    : input('team', { placeholder: 'team id' });
  const sa = input('service_account', { placeholder: 'service account id' });
  const customCost = h('input', { type: 'checkbox', name: 'allow_custom_cost' });
  const belongs = member
    ? h('fieldset', null, h('legend', null, 'Belongs to'), h('p', { class: 'muted' }, 'You: the key acts as you, within your own limits and budgets.'),
      teams.length ? labelled('Team', team, 'Requests with the key count towards this team of yours.') : null)
    : h('fieldset', null, h('legend', null, 'Belongs to'), h('div', { class: 'row' },
      labelled('User', user), labelled('Team', team), labelled('Service account', sa)));
  let d;
  const form = actionForm({ 'aria-label': 'Create key' }, [
    layout[0],
    belongs,
    layout.slice(1),
    member ? null : h('label', { class: 'inline' }, customCost, 'Budgets count the caller\'s own prices (x-portcullis-custom-cost)'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create key')),
  ], async () => {
    const body = { name: f.name.value.trim() };
    for (const [k, el] of [['user', user], ['team', team], ['service_account', sa]]) {
      if (el.value.trim()) body[k] = el.value.trim();
    }
    const models = parseList(f.models.value);
    if (models) body.models = models;
    const expires = dateToIso(f.expires_at.value);
    if (expires) body.expires_at = expires;
    const limits = limitsOf(f);
    if (limits) body.limits = limits;
    const budget = budgetOf(f);
    if (budget) body.budget = budget;
    const denied = parseList(f.tools_denied.value);
    if (denied) body.tools_denied = denied;
    const tools = parseList(f.tools.value);
    if (tools) body.tools = tools;
    if (customCost.checked) body.allow_custom_cost = true;
    const created = await api('/admin/keys', { method: 'POST', body });
    d.close();
    toast(`Key “${created.name}” created`);
    refresh();
    secretDialog('Key created', 'New key secret', created.key, [
      h('p', null, 'Key ', h('span', { class: 'mono' }, created.id), ' — ', owner(created), '.'),
      keySnippet(created.key),
    ]);
  });
  d = dialog('Create a virtual key', form);
  f.name.focus();
}

function editDialog(k, refresh) {
  const { f, layout } = settingsFields(k);
  const initial = Object.fromEntries(Object.entries(f).map(([name, el]) => [name, el.value]));
  const changed = (...names) => names.some((n) => f[n].value !== initial[n]);
  let d;
  const form = actionForm({ 'aria-label': 'Edit key' }, [
    layout,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save changes')),
  ], async () => {
    // Only what changed is sent: a setting left alone stays exactly as stored.
    const body = {};
    if (changed('name')) body.name = f.name.value.trim();
    if (changed('models')) body.models = parseList(f.models.value);
    if (changed('expires_at')) body.expires_at = dateToIso(f.expires_at.value);
    if (changed('requests_per_minute', 'tokens_per_minute', 'max_in_flight')) body.limits = limitsOf(f);
    if (changed('budget_usd', 'budget_period')) body.budget = budgetOf(f);
    if (changed('tools_denied')) body.tools_denied = parseList(f.tools_denied.value);
    if (changed('tools')) body.tools = parseList(f.tools.value);
    if (!Object.keys(body).length) { d.close(); return; }
    const updated = await api('/admin/keys/' + encodeURIComponent(k.id), { method: 'PATCH', body });
    d.close();
    toast(`Key “${updated.name}” saved`);
    refresh();
  });
  d = dialog(`Edit key “${k.name}”`, h('div', null, h('p', { class: 'muted' }, 'Key ', h('span', { class: 'mono' }, k.id), ' — ', owner(k), '. Its secret does not change.'), form));
  f.name.focus();
}

async function rotate(k, refresh) {
  if (!await confirmAction('Rotate key', `Issue a new secret for “${k.name}”? The current secret keeps working for one more hour, then stops.`, 'Rotate')) return;
  let rotated;
  const ok = await act(async () => {
    rotated = await api(`/admin/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST' });
  }, `Key “${k.name}” rotated`);
  if (!ok) return;
  refresh();
  secretDialog('Key rotated', 'New key secret', rotated.key, [
    h('p', null, `The previous secret works until ${when(rotated.previous_key_expires_at)}.`),
    keySnippet(rotated.key),
  ]);
}

async function revoke(k, refresh) {
  if (!await confirmAction('Revoke key', `Revoke “${k.name}”? Every request with it is refused from now on. This cannot be undone.`, 'Revoke')) return;
  if (await act(() => api('/admin/keys/' + encodeURIComponent(k.id), { method: 'DELETE' }), `Key “${k.name}” revoked`)) refresh();
}

export async function render(main, { query, signal }) {
  title('Virtual keys');
  const refresh = () => navigate(location.pathname + location.search, { replace: true });
  const inputs = {};
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the keys' });
  const row = h('div', { class: 'row' });
  for (const [name, label] of (ownOnly() ? FILTERS.slice(0, 1) : FILTERS)) {
    inputs[name] = input(name, { value: query.get(name) || '', placeholder: 'id' });
    row.append(labelled(label, inputs[name]));
  }
  const revoked = h('input', { type: 'checkbox', name: 'include_revoked', checked: query.get('include_revoked') === 'true' });
  row.append(h('label', { class: 'inline' }, revoked, 'Show revoked keys'),
    h('button', { type: 'submit', class: 'primary' }, 'Apply'),
    h('button', { type: 'button', onclick: () => navigate('/ui/keys') }, 'Clear'));
  form.append(row);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) q.set(k, el.value.trim());
    if (revoked.checked) q.set('include_revoked', 'true');
    navigate('/ui/keys' + (q.toString() ? '?' + q : ''));
  });

  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('div', { class: 'pager' });
  replace(main, heading(ownOnly() ? 'Your virtual keys' : 'Virtual keys', h('button', { type: 'button', class: 'primary', onclick: () => createDialog(refresh) }, 'Create key')),
    form, results, pager);

  const q = { limit: 100 };
  for (const k of ['team', 'user', 'service_account', 'include_revoked', 'cursor']) if (query.get(k)) q[k] = query.get(k);
  let page;
  try {
    page = await api('/admin/keys', { query: q, signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e));
    return;
  }
  const columns = [
    { label: 'Name', value: (k) => h('span', null, h('strong', null, k.name), h('br'), h('span', { class: 'mono muted', title: 'The start of its secret' }, k.prefix + '…')) },
    { label: 'Id', value: (k) => h('span', { class: 'mono', title: k.id }, tail(k.id)) },
    { label: 'Belongs to', value: (k) => owner(k), wrap: true },
    { label: 'Models', value: (k) => (k.models ? k.models.join(', ') : 'all'), wrap: true },
    { label: 'Limits and budget', value: (k) => limitsText(k), wrap: true },
    { label: 'Spend', value: (k) => fmtUsd(k.spend_usd), num: true },
    { label: 'Expires', value: (k) => when(k.expires_at) },
    { label: 'Status', value: statusOf },
    { label: 'Created', value: (k) => when(k.created_at) },
    {
      label: 'Actions',
      value: (k) => h('div', { class: 'row-actions' },
        link('/ui/logs?key=' + encodeURIComponent(k.id), 'Requests'),
        k.status === 'revoked' ? null : [
          smallButton('Edit', () => editDialog(k, refresh), { ariaLabel: `Edit ${k.name}` }),
          smallButton('Rotate', () => rotate(k, refresh), { ariaLabel: `Rotate ${k.name}` }),
          smallButton('Revoke', () => revoke(k, refresh), { danger: true, ariaLabel: `Revoke ${k.name}` }),
        ]),
    },
  ];
  replace(results, table(columns, page.data, { empty: 'No key matches. Create one with “Create key”.', caption: 'Virtual keys' }));
  replace(pager,
    query.get('cursor') ? h('button', { type: 'button', onclick: () => { const n = new URLSearchParams(location.search); n.delete('cursor'); navigate('/ui/keys?' + n); } }, 'First page') : null,
    page.next_cursor ? h('button', { type: 'button', onclick: () => { const n = new URLSearchParams(location.search); n.set('cursor', page.next_cursor); navigate('/ui/keys?' + n); } }, 'Next page') : null,
    h('span', { class: 'muted' }, `${page.data.length} key${page.data.length === 1 ? '' : 's'}`));
}
