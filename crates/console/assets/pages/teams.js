// Teams: the list with their members and own limits, creating and deleting teams (deleting
// revokes the team's keys), adding and removing members, setting the team's limits and budget,
// and links to each team's requests, overview and keys.
import { api, h, replace, navigate, link, table, errorBox, title, dialog, confirmAction, toast } from '../lib.js';
import { input, labelled, actionForm, heading, smallButton, act, when, limitsText, limitsDialog, pager } from './_access.js';

function createDialog(refresh) {
  const name = input('name', { required: true, autocomplete: 'off' });
  const id = input('id', { placeholder: 'made from the name', autocomplete: 'off' });
  let d;
  const form = actionForm({ 'aria-label': 'Create team' }, [
    labelled('Name', name),
    labelled('Team id', id, 'Optional: letters, digits and - _ . @ + : (defaults to the name in lower case).'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create team')),
  ], async () => {
    const body = { name: name.value.trim() };
    if (id.value.trim()) body.id = id.value.trim();
    const t = await api('/admin/teams', { method: 'POST', body });
    d.close();
    toast(`Team ${t.id} created`);
    refresh();
  });
  d = dialog('Create a team', form);
  name.focus();
}

/** The members dialog: the team's members (read when opened), remove members, add users (by
 * id or e-mail). */
async function membersDialog(team, refresh) {
  const list = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const current = new Set();
  let changed = false;
  const draw = () => {
    const rows = [...current].sort().map((m) => ({ id: m }));
    replace(list, table([
      { label: 'Member', value: (r) => r.id },
      {
        label: 'Actions',
        value: (r) => smallButton('Remove', async () => {
          if (await act(() => api(`/admin/teams/${encodeURIComponent(team.id)}/members/${encodeURIComponent(r.id)}`, { method: 'DELETE' }), `${r.id} left ${team.id}`)) {
            current.delete(r.id);
            changed = true;
            draw();
          }
        }, { danger: true, ariaLabel: `Remove ${r.id}` }),
      },
    ], rows, { empty: 'No member yet.', caption: `Members of ${team.id}` }));
  };
  const user = input('user', { required: true, autocomplete: 'off', placeholder: 'user id or e-mail' });
  const form = actionForm({ 'aria-label': 'Add member' }, [
    h('div', { class: 'row' }, labelled('User', user), h('button', { type: 'submit', class: 'primary' }, 'Add member')),
  ], async () => {
    const u = await api(`/admin/teams/${encodeURIComponent(team.id)}/members`, { method: 'POST', body: { user: user.value.trim() } });
    current.add(u.id);
    changed = true;
    user.value = '';
    toast(`${u.id} joined ${team.id}`);
    draw();
  });
  dialog(`Members of ${team.name}`, h('div', null, list, form), { onClose: () => { if (changed) refresh(); } });
  user.focus();
  try {
    const full = await api('/admin/teams/' + encodeURIComponent(team.id));
    for (const m of full.members || []) current.add(m);
    draw();
  } catch (e) {
    replace(list, errorBox(e));
  }
}

async function remove(t, refresh) {
  if (!await confirmAction('Delete team', `Delete team ${t.id}? Its memberships and provider keys go, and every key bound to it is revoked. This cannot be undone.`, 'Delete')) return;
  if (await act(() => api('/admin/teams/' + encodeURIComponent(t.id), { method: 'DELETE' }), `Team ${t.id} deleted`)) refresh();
}

export async function render(main, { query, signal }) {
  title('Teams');
  const refresh = () => navigate(location.pathname + location.search, { replace: true });
  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  replace(main, heading('Teams', h('button', { type: 'button', class: 'primary', onclick: () => createDialog(refresh) }, 'Create team')),
    h('p', { class: 'muted' }, 'Teams group users, keys and spend. A team\'s limits and budget bind every request accounted to it; each key may have its own besides (Virtual keys page).'),
    results);
  let teams;
  try {
    teams = await api('/admin/teams', { query: { limit: 100, cursor: query.get('cursor') || undefined }, signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e));
    return;
  }
  const enc = encodeURIComponent;
  const columns = [
    { label: 'Team', value: (t) => h('span', null, h('strong', null, t.name), t.name !== t.id ? h('span', { class: 'mono muted' }, ' ' + t.id) : null) },
    { label: 'Members', value: (t) => t.member_count, num: true },
    { label: 'Limits and budget', value: (t) => limitsText(t), wrap: true },
    { label: 'Created', value: (t) => when(t.created_at) },
    {
      label: 'Actions',
      value: (t) => h('div', { class: 'row-actions' },
        link('/ui/?team=' + enc(t.id), 'Overview'),
        link('/ui/logs?team=' + enc(t.id), 'Requests'),
        link('/ui/keys?team=' + enc(t.id), 'Keys'),
        smallButton('Members', () => membersDialog(t, refresh), { ariaLabel: `Members of ${t.id}` }),
        smallButton('Limits', () => limitsDialog(`team ${t.id}`, t, '/admin/teams/' + enc(t.id), refresh), { ariaLabel: `Limits of ${t.id}` }),
        smallButton('Delete', () => remove(t, refresh), { danger: true, ariaLabel: `Delete ${t.id}` })),
    },
  ];
  replace(results, table(columns, teams.data, { empty: 'No team yet. Create one with “Create team”.', caption: 'Teams' }),
    pager('/ui/teams', query, teams.next_cursor, teams.data.length, 'team'));
}
