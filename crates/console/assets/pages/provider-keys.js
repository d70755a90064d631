// Provider keys: the vault of upstream credentials, sealed under the gateway's secret key and
// used per user, then team, then the provider's default. Lists them (never a secret: only the
// last characters), adds one, rotates one (a new secret sealed in its place: same id, alias
// and owner) and deletes one. Without a vault key the gateway refuses to store any, which this
// page says plainly.
import { api, h, replace, navigate, table, errorBox, title, select, dialog, confirmAction, toast } from '../lib.js';
import { input, labelled, actionForm, heading, smallButton, act, when } from './_access.js';

const SCOPES = [['default', 'Default (everyone without their own)'], ['team', 'A team'], ['user', 'A user']];

/** The notice shown when the gateway has no vault key. */
function vaultNotice(message) {
  return h('div', { class: 'notice', role: 'alert' },
    h('strong', null, 'The provider-key vault is not configured. '),
    'Provider keys cannot be stored until the gateway has a key-encryption key: set PORTCULLIS_SECRET_KEY (32 random bytes, base64) and restart. ',
    message ? h('span', { class: 'muted' }, `(${message})`) : null);
}

function addDialog(providers, notice, refresh) {
  const listId = 'provider-names';
  const provider = input('provider', { required: true, list: listId, autocomplete: 'off', placeholder: 'openai' });
  const names = h('datalist', { id: listId }, providers.map((p) => h('option', { value: p })));
  const alias = input('alias', { required: true, autocomplete: 'off', placeholder: 'e.g. team-research' });
  const secret = input('secret', { type: 'password', required: true, autocomplete: 'off' });
  const scope = select('scope', SCOPES, 'default');
  const owner = input('owner', { autocomplete: 'off', placeholder: 'team id or user id' });
  const ownerField = labelled('Team or user id', owner);
  const syncScope = () => { ownerField.style.display = scope.value === 'default' ? 'none' : ''; owner.required = scope.value !== 'default'; };
  scope.addEventListener('change', syncScope);
  syncScope();
  let d;
  const form = actionForm({ 'aria-label': 'Add provider key' }, [
    labelled('Provider', provider, 'A provider configured on this gateway.'), names,
    labelled('Alias', alias, 'Unique per provider: letters, digits and - _ . @ + :'),
    labelled('Secret', secret, 'Stored sealed; never shown again.'),
    labelled('Used by', scope), ownerField,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Add provider key')),
  ], async () => {
    const body = { provider: provider.value.trim(), alias: alias.value.trim(), secret: secret.value };
    if (scope.value !== 'default') body[scope.value] = owner.value.trim();
    try {
      await api('/admin/provider-keys', { method: 'POST', body });
    } catch (e) {
      if (e.code === 'vault_not_configured') replace(notice, vaultNotice(e.message));
      throw e;
    } finally {
      secret.value = '';
    }
    d.close();
    toast(`Provider key ${body.alias} added for ${body.provider}`);
    refresh();
  });
  d = dialog('Add a provider key', form);
  provider.focus();
}

function rotateDialog(c, refresh) {
  const secret = input('secret', { type: 'password', required: true, autocomplete: 'off' });
  let d;
  const form = actionForm({ 'aria-label': `Rotate ${c.provider} key ${c.alias}` }, [
    h('p', { class: 'muted' }, `Requests that use “${c.alias}” switch to the new secret at once; its id, alias and owner stay. Revoke the old secret at ${c.provider} afterwards.`),
    labelled('New secret', secret, 'Stored sealed; never shown again.'),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Rotate')),
  ], async () => {
    try {
      await api(`/admin/provider-keys/${encodeURIComponent(c.id)}/rotate`, { method: 'POST', body: { secret: secret.value } });
    } finally {
      secret.value = '';
    }
    d.close();
    toast(`Provider key ${c.alias} rotated`);
    refresh();
  });
  d = dialog(`Rotate ${c.provider} key “${c.alias}”`, form);
  secret.focus();
}

async function remove(c, refresh) {
  if (!await confirmAction('Delete provider key', `Delete ${c.provider} key “${c.alias}”? Requests that used it fall back to the next key (team, then default).`, 'Delete')) return;
  if (await act(() => api('/admin/provider-keys/' + encodeURIComponent(c.id), { method: 'DELETE' }), `Provider key ${c.alias} deleted`)) refresh();
}

/** Who a credential serves, as text. */
function ownerText(o) {
  if (o && typeof o === 'object') return o.user ? `user ${o.user}` : `team ${o.team}`;
  return 'default';
}

export async function render(main, { signal }) {
  title('Provider keys');
  const refresh = () => navigate(location.pathname + location.search, { replace: true });
  const notice = h('div');
  const results = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  let providers = [];
  const add = h('button', { type: 'button', class: 'primary', onclick: () => addDialog(providers, notice, refresh) }, 'Add provider key');
  replace(main, heading('Provider keys', add),
    h('p', { class: 'muted' }, 'Upstream credentials used per user, then team, then the provider\'s default. Secrets are sealed; only their last characters are shown.'),
    notice, results);
  let list;
  try {
    list = await api('/admin/provider-keys', { signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    if (e.code === 'vault_not_configured') replace(notice, vaultNotice(e.message));
    replace(results, errorBox(e));
    return;
  }
  // The configured providers, to suggest names (the list works without them).
  api('/admin/providers', { signal }).then((p) => { providers = (p.data || []).map((x) => x.name).filter(Boolean); }).catch(() => {});
  const columns = [
    { label: 'Provider', value: (c) => c.provider },
    { label: 'Alias', value: (c) => c.alias },
    { label: 'Used by', value: (c) => ownerText(c.owner) },
    { label: 'Secret', value: (c) => h('span', { class: 'mono' }, c.hint || '(short secret)') },
    { label: 'Id', value: (c) => h('span', { class: 'mono' }, c.id) },
    { label: 'Created', value: (c) => when(c.created_at) },
    {
      label: 'Actions',
      value: (c) => h('div', { class: 'row-actions' },
        smallButton('Rotate', () => rotateDialog(c, refresh), { ariaLabel: `Rotate ${c.provider} key ${c.alias}` }),
        smallButton('Delete', () => remove(c, refresh), { danger: true, ariaLabel: `Delete ${c.provider} key ${c.alias}` })),
    },
  ];
  replace(results, table(columns, list.data, { empty: 'No provider key stored. Providers use the keys in the configuration.', caption: 'Provider keys' }));
}
