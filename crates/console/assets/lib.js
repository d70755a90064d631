// The console's shared helpers: calls to the gateway's API, DOM building that only ever sets
// text (never HTML), formatting, tables, toasts and dialogs. Every page module imports these.

/** The signed-in session: {subject, user, role, teams, method, csrf_token, expires_at, admin}. */
export const session = { current: null };

/** An error answered by the API, with its HTTP status and the error's code. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the gateway's API with the session cookie (sent by the browser) and the anti-CSRF
 * token; answers the parsed JSON body. A 401 sends the browser to the sign-in page.
 */
export async function api(path, { method = 'GET', body, query, signal } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, v);
    }
    const s = q.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (session.current && method !== 'GET') headers['x-portcullis-csrf'] = session.current.csrf_token;
  let res;
  try {
    res = await fetch(url, {
      method, headers, signal, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The gateway could not be reached', 'network');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { raw: text }; }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const message = typeof err === 'string' ? err : (err.message || `HTTP ${res.status}`);
    if (res.status === 401 && session.current && !path.startsWith('/ui/api/session')) {
      session.current = null;
      navigate('/ui/sign-in?next=' + encodeURIComponent(location.pathname + location.search));
    }
    throw new ApiError(res.status, message, err.code || err.type);
  }
  return data;
}

/**
 * Builds an element. `attrs`: `class`, `on<event>` handlers, `dataset`, boolean properties
 * (`disabled`, `checked`, `readOnly`…), anything else as an attribute. Children: nodes,
 * strings (as text — never parsed as HTML), arrays, or null.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k in PROPS) el[PROPS[k]] = v;
      else if (k === 'style' || k === 'innerHTML' || k === 'srcdoc') throw new Error(`h(): ${k} is not allowed`);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}
const PROPS = { value: 'value', checked: 'checked', disabled: 'disabled', readOnly: 'readOnly', selected: 'selected', hidden: 'hidden' };

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces `el`'s content. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Goes to a console URL without reloading the page. */
export function navigate(url, { replace: rep = false } = {}) {
  if (rep) history.replaceState(null, '', url); else history.pushState(null, '', url);
  window.dispatchEvent(new Event('console:navigate'));
}

/** A link to a console URL that navigates in place. */
export function link(href, ...children) {
  return h('a', {
    href,
    onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      navigate(href);
    },
  }, ...children);
}

const nf = new Intl.NumberFormat();
export const fmtInt = (n) => (n === null || n === undefined ? '—' : nf.format(n));
export function fmtUsd(n) {
  if (n === null || n === undefined) return '—';
  if (n === 0) return '$0';
  if (Math.abs(n) < 0.01) return '$' + n.toPrecision(2);
  return '$' + n.toFixed(2);
}
export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1) return ms.toFixed(2) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
}
export function fmtPct(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return (x * 100).toFixed(x < 0.1 ? 1 : 0) + '%';
}
/** A time as the user's locale shows it, with seconds. */
export function fmtTime(t) {
  if (!t) return '—';
  const d = typeof t === 'number' ? new Date(t) : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
/** The last `n` characters of an id. */
export const tail = (id, n = 12) => (id && id.length > n ? '…' + id.slice(-n) : id || '');

/** A status badge: green for 2xx, amber for 4xx, red for 5xx. */
export function statusBadge(status) {
  const cls = status >= 500 || status === 0 ? 'err' : status >= 400 ? 'warn' : 'ok';
  return h('span', { class: 'badge ' + cls }, String(status));
}

/**
 * A table. `columns`: [{label, value: row => node|string, num?, wrap?}]. `onRow(row)` makes rows
 * clickable and keyboard-activatable.
 */
export function table(columns, rows, { onRow, empty = 'Nothing here yet.', caption } = {}) {
  if (!rows.length) return h('div', { class: 'table-wrap' }, h('p', { class: 'empty' }, empty));
  const head = h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((r) => {
    const tr = h('tr', onRow ? {
      class: 'clickable', tabindex: '0',
      onclick: (e) => { if (!e.target.closest('a,button,input')) onRow(r, e); },
      onkeydown: (e) => { if (e.key === 'Enter') onRow(r, e); },
    } : null, columns.map((c) => h('td', { class: [c.num ? 'num' : '', c.wrap ? 'wrap' : ''].join(' ').trim() || null }, c.value(r))));
    return tr;
  });
  return h('div', { class: 'table-wrap' }, h('table', null, caption ? h('caption', { class: 'skip' }, caption) : null, h('thead', null, head), h('tbody', null, body)));
}

let toasts;
/** A short message in the corner; `kind` 'err' for failures. */
export function toast(message, kind = 'ok') {
  if (!toasts) { toasts = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' }); document.body.appendChild(toasts); }
  const t = h('div', { class: 'toast' + (kind === 'err' ? ' err' : '') }, message);
  toasts.appendChild(t);
  setTimeout(() => t.remove(), kind === 'err' ? 8000 : 4000);
}

/** An error box for a failed load. */
export function errorBox(e) {
  return h('div', { class: 'error-box', role: 'alert' }, e instanceof ApiError ? `${e.message}${e.status ? ` (HTTP ${e.status})` : ''}` : String(e && e.message || e));
}

/** A modal dialog with `content`; answers the dialog element (already open). */
export function dialog(title, content, { onClose } = {}) {
  const d = h('dialog', { 'aria-labelledby': 'dlg-title' },
    h('h2', { id: 'dlg-title' }, title), content,
    h('div', { class: 'row' }, h('span', { class: 'spacer' }), h('button', { type: 'button', onclick: () => d.close() }, 'Close')));
  d.addEventListener('close', () => { d.remove(); if (onClose) onClose(); });
  document.body.appendChild(d);
  d.showModal();
  return d;
}

/** Asks for confirmation in a dialog; resolves true when confirmed. */
export function confirmAction(title, message, confirmLabel = 'Confirm') {
  return new Promise((resolve) => {
    let ok = false;
    const d = dialog(title, h('div', null, h('p', null, message),
      h('div', { class: 'row' }, h('button', { type: 'button', class: 'danger', onclick: () => { ok = true; d.close(); } }, confirmLabel))),
    { onClose: () => resolve(ok) });
  });
}

/** A read-only field holding a secret shown once, with a copy button. */
export function secretField(label, value) {
  const input = h('input', { type: 'text', readOnly: true, value, 'aria-label': label, class: 'mono', onfocus: (e) => e.target.select() });
  const copy = h('button', {
    type: 'button', class: 'primary',
    onclick: async () => {
      try { await navigator.clipboard.writeText(value); toast('Copied to the clipboard'); }
      catch { input.select(); document.execCommand && document.execCommand('copy'); toast('Copied'); }
    },
  }, 'Copy');
  return h('div', null, h('div', { class: 'secret' }, input, copy),
    h('p', { class: 'notice' }, 'This secret is shown only now. Copy it and keep it safe: the gateway stores only its digest.'));
}

/** A form field: a label around an input/select. */
export function field(label, control, cls) {
  return h('label', { class: cls || null }, label, control);
}

/** A select of `options` ([value, label] or strings) with `value` selected. */
export function select(name, options, value, attrs = {}) {
  return h('select', { name, ...attrs }, options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: String(v) === String(value ?? '') }, l);
  }));
}

/** Whether the signed-in user may change things (admin role). */
export const isAdmin = () => !!(session.current && session.current.admin);

/** Sets the document title for a page. */
export function title(t) { document.title = t ? `${t} · Portcullis` : 'Portcullis'; }
