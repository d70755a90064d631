// Users: the list with roles, teams and whether each signs in with a password; creating a user
// (optionally with a password for the console), changing a user's role, name, teams or
// password, setting the user's own limits and budget, disabling one (their keys and tokens stop
// working) and enabling one again.
import { api, h, replace, navigate, link, table, errorBox, title, select, dialog, confirmAction, toast } from '../lib.js';
import { input, labelled, actionForm, heading, smallButton, act, when, limitsText, limitsDialog, pager } from './_access.js';

const ROLES = [['member', 'member'], ['viewer', 'viewer'], ['admin', 'admin']];
const MIN_PASSWORD = 12;

/** Checkboxes for the teams a user belongs to. */
function teamPicker(teams, chosen = []) {
  if (!teams.length) return { el: h('p', { class: 'muted' }, 'No team yet: create one on the Teams page.'), value: () => [] };
  const boxes = teams.map((t) => h('input', { type: 'checkbox', name: 'teams', value: t.id, checked: chosen.includes(t.id) }));
  const el = h('fieldset', null, h('legend', null, 'Teams'),
    h('div', { class: 'checks' }, teams.map((t, i) => h('label', { class: 'inline' }, boxes[i], t.name === t.id ? t.id : `${t.name} (${t.id})`))));
  return { el, value: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

function checkPassword(p) {
  if (p && p.length < MIN_PASSWORD) throw new Error(`The password must have at least ${MIN_PASSWORD} characters`);
}

function createDialog(teams, refresh) {
  const id = input('id', { placeholder: 'defaults to the e-mail', autocomplete: 'off' });
  const email = input('email', { type: 'email', autocomplete: 'off' });
  const name = input('name', { autocomplete: 'off' });
  const role = select('role', ROLES, 'member');
  const password = input('password', { type: 'password', minlength: MIN_PASSWORD, autocomplete: 'new-password' });
  const picker = teamPicker(teams);
  let d;
  const form = actionForm({ 'aria-label': 'Create user' }, [
    labelled('User id', id), labelled('E-mail', email), labelled('Name', name), labelled('Role', role),
    picker.el,
    labelled('Password', password, `Optional: lets the user sign in to the console. At least ${MIN_PASSWORD} characters.`),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create user')),
  ], async () => {
    checkPassword(password.value);
    const body = { role: role.value, teams: picker.value() };
    for (const [k, el] of [['id', id], ['email', email], ['name', name]]) if (el.value.trim()) body[k] = el.value.trim();
    if (password.value) body.password = password.value;
    const u = await api('/admin/users', { method: 'POST', body });
    d.close();
    toast(`User ${u.id} created`);
    refresh();
  });
  d = dialog('Create a user', form);
  id.focus();
}

function editDialog(u, teams, refresh) {
  const name = input('name', { value: u.name || '', autocomplete: 'off' });
  const role = select('role', ROLES, u.role);
  const password = input('password', { type: 'password', minlength: MIN_PASSWORD, autocomplete: 'new-password' });
  const disabled = h('input', { type: 'checkbox', name: 'disabled', checked: u.disabled });
  const picker = teamPicker(teams, u.teams);
  let d;
  const form = actionForm({ 'aria-label': 'Edit user' }, [
    labelled('Name', name), labelled('Role', role), picker.el,
    labelled('New password', password, `Leave empty to keep the current one. At least ${MIN_PASSWORD} characters.`),
    h('label', { class: 'inline' }, disabled, 'Disabled (their keys and tokens stop working)'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save changes')),
  ], async () => {
    checkPassword(password.value);
    const body = {};
    if (name.value.trim() !== (u.name || '')) body.name = name.value.trim();
    if (role.value !== u.role) body.role = role.value;
    const chosen = picker.value();
    if (chosen.slice().sort().join('\n') !== u.teams.slice().sort().join('\n')) body.teams = chosen;
    if (password.value) body.password = password.value;
    if (disabled.checked !== u.disabled) body.disabled = disabled.checked;
    if (!Object.keys(body).length) { d.close(); return; }
    await api('/admin/users/' + encodeURIComponent(u.id), { method: 'PATCH', body });
    d.close();
    toast(`User ${u.id} saved`);
    refresh();
  });
  d = dialog(`Edit user ${u.id}`, form);
  name.focus();
}

async function disable(u, refresh) {
  if (!await confirmAction('Disable user', `Disable ${u.id}? Their keys and tokens stop working at once; you can enable them again.`, 'Disable')) return;
  if (await act(() => api('/admin/users/' + encodeURIComponent(u.id), { method: 'DELETE' }), `User ${u.id} disabled`)) refresh();
}

async function enable(u, refresh) {
  if (await act(() => api('/admin/users/' + encodeURIComponent(u.id), { method: 'PATCH', body: { disabled: false } }), `User ${u.id} enabled`)) refresh();
}

export async function render(main, { query, signal }) {
  title('Users');
  const refresh = () => navigate(location.pathname + location.search, { replace: true });
  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const create = h('button', { type: 'button', class: 'primary', disabled: true }, 'Create user');
  replace(main, heading('Users', create), results);
  let users, teams;
  try {
    [users, teams] = await Promise.all([
      api('/admin/users', { query: { limit: 100, cursor: query.get('cursor') || undefined }, signal }),
      api('/admin/teams', { query: { limit: 1000 }, signal }),
    ]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e));
    return;
  }
  teams = teams.data;
  create.disabled = false;
  create.addEventListener('click', () => createDialog(teams, refresh));
  const columns = [
    { label: 'User', value: (u) => h('span', null, h('strong', null, u.id), u.name ? h('span', { class: 'muted' }, ' · ' + u.name) : null) },
    { label: 'E-mail', value: (u) => u.email || '—' },
    { label: 'Role', value: (u) => u.role },
    { label: 'Teams', value: (u) => (u.teams.length ? u.teams.join(', ') : '—'), wrap: true },
    { label: 'Limits and budget', value: (u) => limitsText(u), wrap: true },
    { label: 'Sign-in', value: (u) => [u.local_login ? 'password' : null, u.issuer ? `single sign-on (${u.issuer})` : null].filter(Boolean).join(', ') || 'keys only' },
    { label: 'Status', value: (u) => (u.disabled ? h('span', { class: 'badge err', title: when(u.disabled_at) }, 'disabled') : h('span', { class: 'badge ok' }, 'active')) },
    { label: 'Created', value: (u) => when(u.created_at) },
    {
      label: 'Actions',
      value: (u) => h('div', { class: 'row-actions' },
        link('/ui/logs?user=' + encodeURIComponent(u.id), 'Requests'),
        link('/ui/keys?user=' + encodeURIComponent(u.id), 'Keys'),
        smallButton('Edit', () => editDialog(u, teams, refresh), { ariaLabel: `Edit ${u.id}` }),
        smallButton('Limits', () => limitsDialog(`user ${u.id}`, u, '/admin/users/' + encodeURIComponent(u.id), refresh), { ariaLabel: `Limits of ${u.id}` }),
        u.disabled
          ? smallButton('Enable', () => enable(u, refresh), { ariaLabel: `Enable ${u.id}` })
          : smallButton('Disable', () => disable(u, refresh), { danger: true, ariaLabel: `Disable ${u.id}` })),
    },
  ];
  replace(results, table(columns, users.data, { empty: 'No user yet. Create one with “Create user”.', caption: 'Users' }),
    pager('/ui/users', query, users.next_cursor, users.data.length, 'user'));
}
