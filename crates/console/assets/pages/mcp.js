// MCP servers: every server behind the gateway with its transport, state and tool count (add
// one, remove one added here); the pinned tool definitions, with the changed ones awaiting an
// admin's approval side by side with what was pinned; and the MCP access rules — who may use
// which tools — added here (removable) next to the configuration file's (read-only).
import { api, h, replace, table, errorBox, toast, confirmAction, field, select, fmtTime, title, ApiError } from '../lib.js';

function badge(text, kind) {
  return h('span', { class: 'badge ' + kind }, text);
}

function statusBadge(s) {
  const kind = s === 'ready' ? 'ok' : s === 'failing' || s === 'stopped' ? 'err' : 'warn';
  return badge(s, kind);
}

const lines = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean);
const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

/** "Name: value" (or NAME=value) lines as an object. */
function pairs(text, sep) {
  const out = {};
  for (const l of lines(text)) {
    const i = l.indexOf(sep);
    if (i <= 0) throw new Error(`Each line must be name${sep}value: ${l.slice(0, 40)}`);
    out[l.slice(0, i).trim()] = l.slice(i + 1).trim();
  }
  return out;
}

function pretty(v) {
  if (v === null || v === undefined) return '—';
  try { return JSON.stringify(v, null, 2); } catch { return String(v); }
}

function scopeText(t) {
  if (t.scope === 'shared') return 'shared';
  if (t.scope === 'credential' && t.credential) {
    const o = t.credential.owner || {};
    const who = o.user ? 'user ' + o.user : o.team ? 'team ' + o.team : 'credential';
    return `${who}'s credential${t.credential.id ? ' ' + t.credential.id : ''}`;
  }
  return 'instance ' + (t.instance || '');
}

export async function render(main, { signal }) {
  title('MCP servers');
  const servers = h('section', { 'aria-labelledby': 'servers-h' }, h('h2', { id: 'servers-h' }, 'Servers'), h('p', { class: 'muted' }, 'Loading…'));
  const pending = h('section', { 'aria-labelledby': 'pending-h' }, h('h2', { id: 'pending-h' }, 'Definitions awaiting approval'));
  const tools = h('section', { 'aria-labelledby': 'tools-h' }, h('h2', { id: 'tools-h' }, 'Pinned tools'));
  const access = h('section', { 'aria-labelledby': 'access-h' }, h('h2', { id: 'access-h' }, 'Access rules: who may use what'));
  replace(main, h('div', { class: 'row page-head' }, h('h1', null, 'MCP servers'), h('span', { class: 'spacer' }),
    h('button', { type: 'button', onclick: () => loadAll() }, 'Refresh')), pending, servers, tools, access);

  const failed = (section, heading, e) => {
    if (e.name === 'AbortError') return;
    replace(section, heading, errorBox(e));
  };

  async function loadServers() {
    const heading = h('h2', { id: 'servers-h' }, 'Servers');
    let res;
    try { res = await api('/admin/mcp-servers', { signal }); } catch (e) { failed(servers, heading, e); return; }
    const cols = [
      { label: 'Server', value: (s) => h('strong', null, s.name) },
      { label: 'Transport', value: (s) => s.transport },
      { label: 'Runs / reaches', wrap: true, value: (s) => h('span', { class: 'mono' }, s.url || [s.command, ...(s.args || [])].join(' ')) },
      { label: 'Status', value: (s) => statusBadge(s.status) },
      { label: 'Tools', num: true, value: (s) => (s.tools === null || s.tools === undefined ? '—' : String(s.tools)) },
      { label: 'From', value: (s) => (s.source === 'config' ? 'config file' : 'admin API') },
      { label: '', value: (s) => (s.source === 'admin' ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Remove server ${s.name}`, onclick: () => removeServer(s.name) }, 'Remove') : null) },
    ];
    replace(servers, heading, table(cols, res.data || [], { empty: 'No MCP server is configured.', caption: 'MCP servers' }), addServerForm());
  }

  async function removeServer(name) {
    if (!(await confirmAction('Remove server', `Remove the MCP server “${name}”? Its tools stop being offered at once.`, 'Remove'))) return;
    try {
      await api('/admin/mcp-servers/' + encodeURIComponent(name), { method: 'DELETE' });
      toast(`Server ${name} removed`);
      loadServers();
    } catch (e) { toast(e.message, 'err'); }
  }

  function addServerForm() {
    const status = h('div');
    const name = h('input', { type: 'text', name: 'name', required: true, pattern: '[A-Za-z0-9_\\-]+', autocomplete: 'off' });
    const transport = select('transport', [['stdio', 'stdio (a program the gateway starts)'], ['streamable_http', 'Streamable HTTP'], ['sse', 'HTTP + SSE (older)']], 'stdio');
    const command = h('input', { type: 'text', name: 'command', autocomplete: 'off' });
    const args = h('textarea', { name: 'args', rows: 2, placeholder: 'one argument per line' });
    const env = h('textarea', { name: 'env', rows: 2, placeholder: 'NAME=value, one per line (values are sealed, never shown again)' });
    const url = h('input', { type: 'url', name: 'url', placeholder: 'https://mcp.example.com/mcp' });
    const headers = h('textarea', { name: 'headers', rows: 2, placeholder: 'Name: value, one per line (values are sealed, never shown again)' });
    const timeout = h('input', { type: 'text', name: 'timeout', placeholder: 'e.g. 30s (default of the file)' });
    const stdioOnly = [field('Command', command), field('Arguments', args), field('Environment', env)];
    const httpOnly = [field('URL', url), field('Headers', headers)];
    const sync = () => {
      const stdio = transport.value === 'stdio';
      stdioOnly.forEach((l) => { l.hidden = !stdio; });
      httpOnly.forEach((l) => { l.hidden = stdio; });
      command.required = stdio;
      url.required = !stdio;
    };
    transport.addEventListener('change', sync);
    sync();
    const form = h('form', { class: 'stack', 'aria-label': 'Add a server' },
      status,
      field('Name', name), field('Transport', transport), ...stdioOnly, ...httpOnly, field('Timeout', timeout),
      h('div', null, h('button', { type: 'submit', class: 'primary' }, 'Add server')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      status.replaceChildren();
      const body = { name: name.value.trim() };
      try {
        if (transport.value === 'stdio') {
          body.command = command.value.trim();
          const a = lines(args.value);
          if (a.length) body.args = a;
          const en = pairs(env.value, '=');
          if (Object.keys(en).length) body.env = en;
        } else {
          body.url = url.value.trim();
          if (transport.value === 'sse') body.transport = 'sse';
          const hd = pairs(headers.value, ':');
          if (Object.keys(hd).length) body.headers = hd;
        }
        if (timeout.value.trim()) body.timeout = timeout.value.trim();
      } catch (err) { status.appendChild(errorBox(err)); return; }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        await api('/admin/mcp-servers', { method: 'POST', body });
        toast(`Server ${body.name} added`);
        loadServers();
        loadTools();
      } catch (err) {
        status.appendChild(errorBox(err));
        button.disabled = false;
      }
    });
    return h('details', null, h('summary', null, 'Add a server'), form);
  }

  async function loadTools() {
    const pendingHeading = h('h2', { id: 'pending-h' }, 'Definitions awaiting approval');
    const toolsHeading = h('h2', { id: 'tools-h' }, 'Pinned tools');
    let res;
    try { res = await api('/admin/mcp-tools', { signal }); } catch (e) { failed(tools, toolsHeading, e); replace(pending, pendingHeading); return; }
    const all = res.data || [];
    const changed = all.filter((t) => t.status === 'changed');
    replace(pending, pendingHeading,
      h('p', { class: 'muted' }, 'A tool whose definition changed since it was pinned is hidden from clients, and its calls refused, until an admin approves the new definition.'),
      changed.length ? changed.map(reviewCard) : h('p', { class: 'empty' }, 'No changed definition awaits approval.'));
    const cols = [
      { label: 'Server', value: (t) => t.server },
      { label: 'Tool', value: (t) => h('span', { class: 'mono' }, t.tool) },
      { label: 'Scope', value: scopeText },
      { label: 'Status', value: (t) => (t.status === 'changed' ? badge('changed', 'warn') : badge('pinned', 'ok')) },
      { label: 'First seen', value: (t) => fmtTime(t.first_seen) },
      { label: 'Last seen', value: (t) => fmtTime(t.last_seen) },
      { label: 'Approved', value: (t) => fmtTime(t.approved_at) },
    ];
    replace(tools, toolsHeading, table(cols, all, { empty: 'No tool has been pinned yet.', caption: 'Pinned tools' }));
  }

  function reviewCard(t) {
    const status = h('div');
    const approve = h('button', { type: 'button', class: 'primary', 'aria-label': `Approve ${t.server} ${t.tool}` }, 'Approve');
    approve.addEventListener('click', async () => {
      approve.disabled = true;
      status.replaceChildren();
      const body = { fingerprint: t.current_fingerprint };
      if (t.scope === 'credential' && t.credential && t.credential.id) body.credential = t.credential.id;
      if (t.scope === 'instance' && t.instance) body.instance = t.instance;
      try {
        await api(`/admin/mcp-tools/${encodeURIComponent(t.server)}/${encodeURIComponent(t.tool)}/approve`, { method: 'POST', body });
        toast(`${t.server} · ${t.tool}: the new definition is approved`);
        loadTools();
      } catch (e) {
        const msg = e instanceof ApiError && e.status === 409
          ? new Error('The definition changed again since this page loaded: review it again. ' + e.message)
          : e;
        status.appendChild(errorBox(msg));
        approve.disabled = false;
      }
    });
    return h('div', { class: 'panel' },
      h('h3', null, h('span', { class: 'mono' }, `${t.server} · ${t.tool}`), ' ', badge('changed', 'warn')),
      h('p', { class: 'muted' }, `${scopeText(t)} · changed ${fmtTime(t.changed_at)} · fingerprint ${t.current_fingerprint}`),
      h('div', { class: 'grid2' },
        h('div', null, h('h4', null, 'Pinned definition'), h('pre', null, pretty(t.pinned_definition))),
        h('div', null, h('h4', null, 'New definition'), h('pre', null, pretty(t.pending_definition)))),
      status,
      h('div', { class: 'row' }, approve));
  }

  async function loadAccess() {
    const heading = h('h2', { id: 'access-h' }, 'Access rules: who may use what');
    let res;
    try { res = await api('/admin/mcp-access', { signal }); } catch (e) { failed(access, heading, e); return; }
    const who = (r) => {
      const parts = [];
      if (r.users && r.users.length) parts.push('users ' + r.users.join(', '));
      if (r.teams && r.teams.length) parts.push('teams ' + r.teams.join(', '));
      if (r.roles && r.roles.length) parts.push('roles ' + r.roles.join(', '));
      return parts.length ? parts.join(' · ') : 'everyone';
    };
    const cols = (editable) => [
      { label: 'Tools', wrap: true, value: (r) => h('span', { class: 'mono' }, (r.tools || []).join(', ')) },
      { label: 'Who', wrap: true, value: who },
      { label: 'Effect', value: (r) => (r.allow ? badge('allow', 'ok') : badge('deny', 'err')) },
      editable ? { label: 'Added', value: (r) => fmtTime(r.created_at) } : null,
      editable ? { label: '', value: (r) => h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete rule ${r.id}`, onclick: () => deleteRule(r) }, 'Delete') } : null,
    ].filter(Boolean);
    replace(access, heading,
      h('p', { class: 'muted' }, 'Rules added here apply together with the configuration file’s mcp.access rules.'),
      h('h3', null, 'Added through the admin API'),
      table(cols(true), res.data || [], { empty: 'No rule has been added here.', caption: 'MCP access rules added through the API' }),
      h('h3', null, 'From the configuration file (read-only)'),
      table(cols(false), res.configured || [], { empty: 'The configuration file has no mcp.access rule.', caption: 'MCP access rules of the configuration file' }),
      accessForm());
  }

  async function deleteRule(r) {
    if (!(await confirmAction('Delete access rule', `Delete the rule for ${(r.tools || []).join(', ')}?`, 'Delete'))) return;
    try {
      await api('/admin/mcp-access/' + encodeURIComponent(r.id), { method: 'DELETE' });
      toast('Access rule deleted');
      loadAccess();
    } catch (e) { toast(e.message, 'err'); }
  }

  function accessForm() {
    const status = h('div');
    const toolsIn = h('input', { type: 'text', name: 'tools', required: true, placeholder: 'github__*, files__read_file' });
    const users = h('input', { type: 'text', name: 'users', placeholder: 'user ids, comma-separated' });
    const teams = h('input', { type: 'text', name: 'teams', placeholder: 'team ids, comma-separated' });
    const roleBoxes = ['admin', 'member', 'viewer'].map((r) => h('input', { type: 'checkbox', name: 'roles', value: r, id: 'mcp-role-' + r }));
    const effect = select('effect', [['allow', 'Allow'], ['deny', 'Deny']], 'allow');
    const form = h('form', { class: 'stack', 'aria-label': 'Add an access rule' },
      status,
      field('Tools (globs, comma-separated)', toolsIn),
      field('Users', users),
      field('Teams', teams),
      h('fieldset', null, h('legend', null, 'Roles'), h('div', { class: 'checks' }, roleBoxes.map((b) => h('label', { class: 'inline', for: b.id }, b, b.value)))),
      field('Effect', effect),
      h('div', null, h('button', { type: 'submit', class: 'primary' }, 'Add rule')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      status.replaceChildren();
      const body = {
        tools: list(toolsIn.value), users: list(users.value), teams: list(teams.value),
        roles: roleBoxes.filter((b) => b.checked).map((b) => b.value), allow: effect.value === 'allow',
      };
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        await api('/admin/mcp-access', { method: 'POST', body });
        toast('Access rule added');
        loadAccess();
      } catch (err) {
        status.appendChild(errorBox(err));
        button.disabled = false;
      }
    });
    return h('details', null, h('summary', null, 'Add an access rule'), form);
  }

  function loadAll() { return Promise.all([loadServers(), loadTools(), loadAccess()]); }
  await loadAll();
}
