// Tool policies in the order they apply: the configuration file's first (read-only), then those
// added through the admin API, which can be added, edited, moved and deleted here. Each rule
// matches tool names by a glob and says how a call is decided (allow, block, trusted only,
// approval) and how the tool's output is trusted.
import { api, h, replace, table, errorBox, toast, confirmAction, field, select, dialog, fmtTime, title } from '../lib.js';

const CALLS = [['', 'default'], ['allow', 'allow'], ['block', 'block'], ['trusted_only', 'trusted only'], ['approval', 'approval (held for an admin)']];
const OUTPUTS = [['', 'default'], ['trusted', 'trusted'], ['untrusted', 'untrusted'], ['quarantine', 'quarantine']];
const ROLES = ['admin', 'member', 'viewer'];

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

function badge(text, kind) {
  return h('span', { class: 'badge ' + kind }, text);
}

function who(rule) {
  const parts = [];
  if (rule.users && rule.users.length) parts.push('users ' + rule.users.join(', '));
  if (rule.teams && rule.teams.length) parts.push('teams ' + rule.teams.join(', '));
  if (rule.roles && rule.roles.length) parts.push('roles ' + rule.roles.join(', '));
  return parts.length ? parts.join(' · ') : 'everyone';
}

function json(v) {
  return v && Object.keys(v).length ? JSON.stringify(v, null, 2) : '';
}

/** A rule's form (add or edit); `onSave(rule)` gets the rule as the file would hold it. */
function ruleForm(rule, submitLabel, onSave) {
  const uid = Math.random().toString(36).slice(2, 8);
  const status = h('div');
  const match = h('input', { type: 'text', name: 'match', required: true, value: rule.match || '', placeholder: 'send_* or github__create_issue', autocomplete: 'off' });
  const call = select('call', CALLS, rule.call || '');
  const output = select('output', OUTPUTS, rule.output || '');
  const users = h('input', { type: 'text', name: 'users', value: (rule.users || []).join(', '), placeholder: 'user ids, comma-separated' });
  const teams = h('input', { type: 'text', name: 'teams', value: (rule.teams || []).join(', '), placeholder: 'team ids, comma-separated' });
  const roles = ROLES.map((r) => h('input', { type: 'checkbox', name: 'roles', value: r, id: `pol-${uid}-${r}`, checked: (rule.roles || []).includes(r) }));
  const args = h('textarea', { name: 'args', rows: 3, class: 'mono', value: json(rule.args), placeholder: '{"iban": {"in": ["DE89…"]}}' });
  const questions = h('textarea', { name: 'questions', rows: 3, class: 'mono', value: json(rule.questions), placeholder: 'with output quarantine: the questions asked (JSON)' });
  args.value = json(rule.args);
  questions.value = json(rule.questions);
  const form = h('form', { class: 'stack' },
    status,
    field('Tool name (glob)', match),
    field('Call', call),
    field('Output', output),
    field('Users (who may use the tool)', users),
    field('Teams', teams),
    h('fieldset', null, h('legend', null, 'Roles'), h('div', { class: 'checks' }, roles.map((b) => h('label', { class: 'inline', for: b.id }, b, b.value)))),
    field('Argument conditions (JSON, optional)', args),
    field('Quarantine questions (JSON, optional)', questions),
    h('div', null, h('button', { type: 'submit', class: 'primary' }, submitLabel)));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.replaceChildren();
    const out = { match: match.value.trim() };
    if (call.value) out.call = call.value;
    if (output.value) out.output = output.value;
    const u = list(users.value); if (u.length) out.users = u;
    const t = list(teams.value); if (t.length) out.teams = t;
    const r = roles.filter((b) => b.checked).map((b) => b.value); if (r.length) out.roles = r;
    for (const [name, el] of [['args', args], ['questions', questions]]) {
      const text = el.value.trim();
      if (!text) continue;
      try { out[name] = JSON.parse(text); } catch (err) {
        status.appendChild(errorBox(new Error(`${name === 'args' ? 'Argument conditions' : 'Quarantine questions'}: not JSON (${err.message})`)));
        return;
      }
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await onSave(out);
    } catch (err) {
      status.appendChild(errorBox(err));
      button.disabled = false;
    }
  });
  return form;
}

export async function render(main, { signal }) {
  title('Tool policies');
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  replace(main, h('div', { class: 'row page-head' }, h('h1', null, 'Tool policies'), h('span', { class: 'spacer' }),
    h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
  h('p', { class: 'muted' }, 'Rules apply in this order: the configuration file’s first, then those added here. A call or output no rule matches gets the defaults.'),
  body);

  let entries = [];
  /** The stored rules as the API keeps them, in order. */
  const stored = () => entries.filter((e) => e.source === 'api');

  async function putStored(rules) {
    await api('/admin/tool-policies', { method: 'PUT', body: { rules } });
  }

  async function move(entry, by) {
    const rules = stored();
    const i = rules.indexOf(entry);
    const j = i + by;
    if (i < 0 || j < 0 || j >= rules.length) return;
    [rules[i], rules[j]] = [rules[j], rules[i]];
    try {
      await putStored(rules.map((e) => e.rule));
      toast('Order saved');
      load();
    } catch (e) { toast(e.message, 'err'); }
  }

  function edit(entry) {
    const d = dialog('Edit tool policy', ruleForm(entry.rule || {}, 'Save', async (rule) => {
      const rules = stored().map((e) => (e === entry ? rule : e.rule));
      await putStored(rules);
      d.close();
      toast('Policy saved');
      load();
    }));
  }

  async function remove(entry) {
    if (!(await confirmAction('Delete tool policy', `Delete the policy for “${entry.rule && entry.rule.match}”?`, 'Delete'))) return;
    try {
      await api('/admin/tool-policies/' + encodeURIComponent(entry.id), { method: 'DELETE' });
      toast('Policy deleted');
      load();
    } catch (e) { toast(e.message, 'err'); }
  }

  async function load() {
    let res;
    try { res = await api('/admin/tool-policies', { signal }); } catch (e) {
      if (e.name === 'AbortError') return;
      replace(body, errorBox(e));
      return;
    }
    entries = res.data || [];
    const apiRules = stored();
    const cols = [
      { label: '#', num: true, value: (e) => (e.index === undefined || e.index === null ? '—' : String(e.index)) },
      { label: 'Source', value: (e) => (e.source === 'file' ? 'config file' : 'admin API') },
      { label: 'Tool', value: (e) => h('span', { class: 'mono' }, (e.rule && e.rule.match) || '?') },
      { label: 'Call', value: (e) => (e.rule && e.rule.call) || 'default' },
      { label: 'Output', value: (e) => (e.rule && e.rule.output) || 'default' },
      { label: 'Who', wrap: true, value: (e) => (e.rule ? who(e.rule) : '—') },
      { label: 'Conditions', wrap: true, value: (e) => (e.rule && e.rule.args && Object.keys(e.rule.args).length ? h('pre', null, JSON.stringify(e.rule.args, null, 2)) : '—') },
      { label: 'Added', value: (e) => (e.source === 'api' ? [fmtTime(e.created_at), e.created_by ? ` by ${e.created_by}` : ''] : '—') },
      { label: 'State', wrap: true, value: (e) => (e.not_applied ? badge('not applied: ' + e.not_applied, 'err') : badge('in force', 'ok')) },
      { label: 'Actions', value: (e) => {
        if (e.source !== 'api') return h('span', { class: 'muted' }, 'read-only');
        const i = apiRules.indexOf(e);
        const m = (e.rule && e.rule.match) || '';
        return h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'small', 'aria-label': `Edit policy ${m}`, onclick: () => edit(e) }, 'Edit'),
          h('button', { type: 'button', class: 'small', 'aria-label': `Move policy ${m} up`, disabled: i === 0, onclick: () => move(e, -1) }, 'Up'),
          h('button', { type: 'button', class: 'small', 'aria-label': `Move policy ${m} down`, disabled: i === apiRules.length - 1, onclick: () => move(e, 1) }, 'Down'),
          h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete policy ${m}`, onclick: () => remove(e) }, 'Delete'));
      } },
    ];
    const add = ruleForm({}, 'Add policy', async (rule) => {
      await api('/admin/tool-policies', { method: 'POST', body: rule });
      toast(`Policy for ${rule.match} added`);
      load();
    });
    replace(body,
      table(cols, entries, { empty: 'No tool policy: every tool gets the defaults.', caption: 'Tool policies in order' }),
      h('section', { 'aria-labelledby': 'add-policy-h' }, h('h2', { id: 'add-policy-h' }, 'Add a policy'), h('p', { class: 'muted' }, 'It applies after every rule above.'), add));
  }

  await load();
}
