// Service accounts: machine identities for keys and OAuth clients. The list, creating one,
// disabling one (its keys and tokens stop working), issuing OAuth client credentials for one
// (the client-credentials grant), whose secret is shown once, and listing and revoking its
// clients (rotating a secret: a new client, the service switched to it, the old one revoked).
import { api, h, replace, navigate, link, table, errorBox, title, select, dialog, confirmAction, toast, ApiError } from '../lib.js';
import { input, labelled, parseList, actionForm, heading, smallButton, act, secretDialog, when } from './_access.js';

const ROLES = [['member', 'member'], ['viewer', 'viewer'], ['admin', 'admin']];

function createDialog(teams, refresh) {
  const name = input('name', { required: true, autocomplete: 'off' });
  const id = input('id', { placeholder: 'generated', autocomplete: 'off' });
  const team = select('team', [['', '(none)'], ...teams.map((t) => [t.id, t.name === t.id ? t.id : `${t.name} (${t.id})`])], '');
  const role = select('role', ROLES, 'member');
  let d;
  const form = actionForm({ 'aria-label': 'Create service account' }, [
    labelled('Name', name), labelled('Service account id', id, 'Optional.'), labelled('Team', team), labelled('Role', role),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create service account')),
  ], async () => {
    const body = { name: name.value.trim(), role: role.value };
    if (id.value.trim()) body.id = id.value.trim();
    if (team.value) body.team = team.value;
    const a = await api('/admin/service-accounts', { method: 'POST', body });
    d.close();
    toast(`Service account ${a.id} created`);
    refresh();
  });
  d = dialog('Create a service account', form);
  name.focus();
}

function clientDialog(a) {
  const name = input('name', { placeholder: a.name, autocomplete: 'off' });
  const scopes = input('scopes', { placeholder: 'e.g. admin' });
  let d;
  const form = actionForm({ 'aria-label': 'New OAuth client' }, [
    labelled('Client name', name, 'Optional: defaults to the service account\'s name.'),
    labelled('Scopes', scopes, 'Optional comma list of the scopes the client may ask for.'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create client')),
  ], async () => {
    const body = {};
    if (name.value.trim()) body.name = name.value.trim();
    const s = parseList(scopes.value);
    if (s) body.scopes = s;
    const c = await api(`/admin/service-accounts/${encodeURIComponent(a.id)}/clients`, { method: 'POST', body });
    d.close();
    toast('OAuth client created');
    secretDialog('OAuth client created', 'New client secret', c.client_secret, [
      h('dl', { class: 'kv' },
        h('dt', null, 'Client id'), h('dd', { class: 'mono' }, c.client_id),
        h('dt', null, 'Token endpoint'), h('dd', { class: 'mono' }, c.token_endpoint),
        h('dt', null, 'Service account'), h('dd', null, c.service_account)),
      h('p', { class: 'muted' }, 'Exchange them for a token with the client-credentials grant (grant_type=client_credentials).'),
    ]);
  });
  d = dialog(`New OAuth client for ${a.name}`, form);
  name.focus();
}

/** The account's OAuth clients (read when opened), each with a Revoke button. */
async function clientsDialog(a) {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  dialog(`OAuth clients of ${a.name}`, h('div', null,
    h('p', { class: 'muted' }, 'To rotate a secret: create a new client, switch the service to it, then revoke the old one.'),
    body));
  const draw = async () => {
    let clients;
    try {
      clients = await api(`/admin/service-accounts/${encodeURIComponent(a.id)}/clients`);
    } catch (e) {
      replace(body, errorBox(e instanceof ApiError && e.code === 'oauth_not_configured'
        ? new Error('This gateway has no OAuth server (`oauth:` and `secret_key`), so service accounts have no OAuth clients.')
        : e));
      return;
    }
    replace(body, table([
      { label: 'Client id', value: (c) => h('span', { class: 'mono' }, c.client_id) },
      { label: 'Name', value: (c) => c.name || '—' },
      { label: 'Scopes', value: (c) => (c.scopes ? c.scopes.join(', ') : 'any') },
      { label: 'Created', value: (c) => when(c.created_at) },
      {
        label: 'Actions',
        value: (c) => smallButton('Revoke', async () => {
          if (await act(() => api(`/admin/service-accounts/${encodeURIComponent(a.id)}/clients/${encodeURIComponent(c.client_id)}`, { method: 'DELETE' }), `Client ${c.client_id} revoked`)) draw();
        }, { danger: true, ariaLabel: `Revoke client ${c.client_id}` }),
      },
    ], clients.data, { empty: 'No OAuth client yet.', caption: `OAuth clients of ${a.id}` }));
  };
  await draw();
}

async function disable(a, refresh) {
  if (!await confirmAction('Disable service account', `Disable ${a.id}? Its keys and tokens stop working at once.`, 'Disable')) return;
  if (await act(() => api('/admin/service-accounts/' + encodeURIComponent(a.id), { method: 'DELETE' }), `Service account ${a.id} disabled`)) refresh();
}

export async function render(main, { signal }) {
  title('Service accounts');
  const refresh = () => navigate(location.pathname + location.search, { replace: true });
  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const create = h('button', { type: 'button', class: 'primary', disabled: true }, 'Create service account');
  replace(main, heading('Service accounts', create), results);
  let list, teams;
  try {
    [list, teams] = await Promise.all([api('/admin/service-accounts', { signal }), api('/admin/teams', { query: { limit: 1000 }, signal })]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(results, errorBox(e));
    return;
  }
  create.disabled = false;
  create.addEventListener('click', () => createDialog(teams.data, refresh));
  const columns = [
    { label: 'Service account', value: (a) => h('span', null, h('strong', null, a.name), h('span', { class: 'mono muted' }, ' ' + a.id)) },
    { label: 'Team', value: (a) => a.team || '—' },
    { label: 'Role', value: (a) => a.role },
    { label: 'Status', value: (a) => h('span', { class: 'badge ' + (a.disabled ? 'err' : 'ok') }, a.disabled ? 'disabled' : 'active') },
    { label: 'Created', value: (a) => when(a.created_at) },
    {
      label: 'Actions',
      value: (a) => h('div', { class: 'row-actions' },
        link('/ui/keys?service_account=' + encodeURIComponent(a.id), 'Keys'),
        a.disabled ? null : [
          smallButton('New OAuth client', () => clientDialog(a), { ariaLabel: `New OAuth client for ${a.id}` }),
          smallButton('OAuth clients', () => clientsDialog(a), { ariaLabel: `OAuth clients of ${a.id}` }),
          smallButton('Disable', () => disable(a, refresh), { danger: true, ariaLabel: `Disable ${a.id}` }),
        ]),
    },
  ];
  replace(results, table(columns, list.data, { empty: 'No service account yet.', caption: 'Service accounts' }));
}
