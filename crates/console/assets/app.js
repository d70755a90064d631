// The console's shell: the session, the sign-in page, the navigation and the router that
// loads each page's module. Every console page has its own URL under /ui/.
import { api, session, h, replace, link, navigate, errorBox, ApiError, toast, title } from './lib.js';

/**
 * Pages: path pattern, module, navigation label and group; `admin`: only admins see it; `own`:
 * admins, and members for their own (the server applies the same rules to every call).
 */
const ROUTES = [
  { path: /^\/ui\/?$/, page: 'overview', label: 'Overview', href: '/ui/', group: 'Traffic' },
  { path: /^\/ui\/logs\/?$/, page: 'logs', label: 'Logs', href: '/ui/logs', group: 'Traffic' },
  { path: /^\/ui\/logs\/([^/]+)$/, page: 'log', nav: 'logs' },
  { path: /^\/ui\/keys\/?$/, page: 'keys', label: 'Virtual keys', href: '/ui/keys', group: 'Access', own: true },
  { path: /^\/ui\/users\/?$/, page: 'users', label: 'Users', href: '/ui/users', group: 'Access', admin: true },
  { path: /^\/ui\/teams\/?$/, page: 'teams', label: 'Teams', href: '/ui/teams', group: 'Access', admin: true },
  { path: /^\/ui\/service-accounts\/?$/, page: 'service-accounts', label: 'Service accounts', href: '/ui/service-accounts', group: 'Access', admin: true },
  { path: /^\/ui\/provider-keys\/?$/, page: 'provider-keys', label: 'Provider keys', href: '/ui/provider-keys', group: 'Access', admin: true },
  { path: /^\/ui\/providers\/?$/, page: 'providers', label: 'Providers & routes', href: '/ui/providers', group: 'Gateway', admin: true },
  { path: /^\/ui\/mcp\/?$/, page: 'mcp', label: 'MCP servers', href: '/ui/mcp', group: 'Agents', admin: true },
  { path: /^\/ui\/policies\/?$/, page: 'policies', label: 'Tool policies', href: '/ui/policies', group: 'Agents', admin: true },
  { path: /^\/ui\/approvals\/?$/, page: 'approvals', label: 'Approvals', href: '/ui/approvals', group: 'Agents', admin: true },
  { path: /^\/ui\/audit\/?$/, page: 'audit', label: 'Audit trail', href: '/ui/audit', group: 'Agents', admin: true },
];

const app = document.getElementById('app');
let current = null; // the page being shown: {controller}

function applyTheme() {
  const t = localStorage.getItem('portcullis-theme');
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}

/** Whether the dark theme is shown (chosen, or the system's when none is chosen). */
function isDark() {
  return document.documentElement.dataset.theme === 'dark' ||
    (!document.documentElement.dataset.theme && matchMedia('(prefers-color-scheme: dark)').matches);
}

function toggleTheme(e) {
  localStorage.setItem('portcullis-theme', isDark() ? 'light' : 'dark');
  applyTheme();
  e.currentTarget.setAttribute('aria-pressed', String(isDark()));
}

async function loadSession() {
  const s = await api('/ui/api/session');
  session.current = s && s.signed_in ? s : null;
}

async function signOut() {
  try { await api('/ui/api/session', { method: 'DELETE' }); } catch (e) { if (!(e instanceof ApiError) || e.status !== 401) { toast(e.message, 'err'); return; } }
  session.current = null;
  navigate('/ui/sign-in');
}

function markCurrent(a, yes) {
  if (yes) a.setAttribute('aria-current', 'page');
  return a;
}

function brand() {
  const a = link('/ui/', h('img', { src: document.querySelector('link[rel=icon]').href, alt: '' }), 'Portcullis');
  a.className = 'brand';
  return a;
}

/** Whether the signed-in session may open route `r`. */
function opens(r) {
  const s = session.current;
  if (s.admin) return true;
  if (r.own) return s.role === 'member';
  return !r.admin;
}

function nav(active) {
  const groups = [];
  for (const r of ROUTES) {
    if (!r.label || !opens(r)) continue;
    let g = groups.find((x) => x.name === r.group);
    if (!g) { g = { name: r.group, items: [] }; groups.push(g); }
    g.items.push(r);
  }
  return h('nav', { class: 'sidebar', 'aria-label': 'Console pages' },
    brand(),
    groups.map((g) => [
      h('div', { class: 'nav-group', id: 'nav-' + g.name }, g.name),
      h('ul', { class: 'nav', 'aria-labelledby': 'nav-' + g.name }, g.items.map((r) =>
        h('li', null, markCurrent(link(r.href, r.label), r.page === active)))),
    ]));
}

function topbar() {
  const s = session.current;
  const who = s.user || (s.subject === 'master' ? 'master key' : s.subject);
  return h('header', { class: 'topbar' },
    h('div', { class: 'who' }, 'Signed in as ', h('strong', null, who), ` · ${s.role}`, s.teams && s.teams.length ? ` · ${s.teams.join(', ')}` : ''),
    h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: toggleTheme, 'aria-pressed': String(isDark()), title: 'Switch between light and dark' }, 'Dark theme'),
      h('button', { type: 'button', onclick: signOut }, 'Sign out')));
}

async function route() {
  if (current && current.controller) current.controller.abort();
  const path = location.pathname;
  if (path === '/ui/sign-in') return signInPage();
  if (!session.current) await loadSession();
  if (!session.current) {
    navigate('/ui/sign-in?next=' + encodeURIComponent(path + location.search), { replace: true });
    return;
  }
  let match = null;
  let r = null;
  for (const candidate of ROUTES) {
    match = path.match(candidate.path);
    if (match) { r = candidate; break; }
  }
  const main = h('main', { id: 'main', tabindex: '-1' });
  const active = r ? (r.nav || r.page) : null;
  replace(app, h('div', { class: 'shell' }, nav(active), h('div', null, topbar(), main)));
  if (!r) { title('Not found'); replace(main, h('h1', null, 'Not found'), h('p', null, 'No console page has this address. '), link('/ui/', 'Go to the overview')); return; }
  if (!opens(r)) {
    title('Not allowed');
    replace(main, h('h1', null, 'Not allowed'), h('p', null, 'This page is for admins. Your role is ' + session.current.role + '.'));
    return;
  }
  const controller = new AbortController();
  current = { controller };
  try {
    const mod = await import(`./pages/${r.page}.js`);
    await mod.render(main, { params: match.slice(1).map(decodeURIComponent), query: new URLSearchParams(location.search), signal: controller.signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    replace(main, h('h1', null, r.label || 'Error'), errorBox(e));
  }
}

function signInPage() {
  title('Sign in');
  const params = new URLSearchParams(location.search);
  let next = params.get('next') || '/ui/';
  if (!next.startsWith('/ui/') || next.startsWith('/ui/sign-in')) next = '/ui/';
  const status = h('div');
  if (params.get('error')) status.appendChild(errorBox(new Error(params.get('error'))));
  const card = h('div', { class: 'signin' }, h('h1', null, h('img', { src: document.querySelector('link[rel=icon]').href, alt: '', width: 28, height: 28 }), 'Sign in to Portcullis'), status);
  replace(app, h('main', { id: 'main' }, card));

  async function submit(e, body) {
    e.preventDefault();
    const button = e.target.querySelector('button[type=submit]');
    button.disabled = true;
    status.replaceChildren();
    try {
      session.current = await api('/ui/api/session', { method: 'POST', body });
      navigate(next, { replace: true });
    } catch (err) {
      status.appendChild(errorBox(err));
      button.disabled = false;
    }
  }
  const keyForm = h('form', { class: 'stack', onsubmit: (e) => submit(e, { master_key: keyInput.value }) });
  const keyInput = h('input', { type: 'password', name: 'master_key', autocomplete: 'current-password', required: true, id: 'master-key' });
  keyForm.append(h('label', { for: 'master-key' }, 'Master key', keyInput),
    h('p', { class: 'muted' }, 'The key printed when the gateway started, or PORTCULLIS_MASTER_KEY.'),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));

  const userInput = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true, id: 'user' });
  const passInput = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, id: 'password' });
  const userForm = h('form', { class: 'stack', onsubmit: (e) => submit(e, { user: userInput.value, password: passInput.value }) },
    h('label', { for: 'user' }, 'User id or e-mail', userInput),
    h('label', { for: 'password' }, 'Password', passInput),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));

  const panel = h('div', { role: 'tabpanel' });
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'How to sign in' });
  const choices = [['Master key', keyForm], ['User and password', userForm]];
  const show = (i) => {
    [...tabs.children].forEach((t, j) => t.setAttribute('aria-selected', String(i === j)));
    replace(panel, choices[i][1]);
    const first = panel.querySelector('input');
    if (first) first.focus();
  };
  choices.forEach(([label], i) => tabs.appendChild(h('button', { type: 'button', role: 'tab', onclick: () => show(i) }, label)));
  card.append(tabs, panel);
  show(0);
  api('/ui/api/sign-in-methods').then((m) => {
    if (m && m.oauth) {
      card.append(h('hr'), h('a', { class: 'button', href: '/ui/auth/oauth?next=' + encodeURIComponent(next) }, 'Sign in with single sign-on'));
    }
    if (m && !m.password) tabs.children[1].hidden = true;
  }).catch(() => {});
}

applyTheme();
window.addEventListener('popstate', route);
window.addEventListener('console:navigate', route);
route();
