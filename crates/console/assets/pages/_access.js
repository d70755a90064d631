// What the Access pages (virtual keys, users, teams, service accounts, provider keys) share:
// labelled inputs, forms that show their own errors, comma lists, dates as the API takes them
// and dialogs that show a secret once. Not a page of its own.
import { h, api, errorBox, dialog, secretField, toast, ApiError, fmtTime, fmtUsd, select, navigate } from '../lib.js';

let seq = 0;

/** An input with a `name` (and an id for its label); `attrs` as h() takes them. */
export function input(name, attrs = {}) {
  return h('input', { type: 'text', name, id: `f-${name}-${++seq}`, ...attrs });
}

/** A labelled control, with an optional hint under it (the control's description). */
export function labelled(label, control, hint) {
  const l = h('label', null, label, control);
  if (!hint) return l;
  const id = `hint-${++seq}`;
  control.setAttribute('aria-describedby', id);
  return h('div', { class: 'field' }, l, h('span', { class: 'hint', id }, hint));
}

/** A comma (or newline) separated list as an array; null when it names nothing. */
export function parseList(text) {
  const items = String(text || '').split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

/** An array as the comma list an input shows. */
export const showList = (a) => (Array.isArray(a) ? a.join(', ') : '');

/** A whole number from an input, or null when empty; throws on anything else. */
export function parseCount(label, text) {
  const t = String(text || '').trim();
  if (!t) return null;
  if (!/^\d+$/.test(t) || Number(t) < 1) throw new Error(`${label} must be a whole number above 0`);
  return Number(t);
}

/** The end of a `YYYY-MM-DD` day in the user's time zone, as RFC 3339; null when empty. */
export function dateToIso(date) {
  if (!date) return null;
  const d = new Date(`${date}T23:59:59`);
  if (Number.isNaN(d.getTime())) throw new Error('The date is not valid');
  return d.toISOString();
}

/** An RFC 3339 time as the `YYYY-MM-DD` a date input shows (the user's time zone). */
export function isoToDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/**
 * A form that runs `action(form)` on submit: its submit button disabled meanwhile, a failure
 * shown in the form (errorBox), a success left to `action` (toast, refresh, closing).
 */
export function actionForm(attrs, children, action) {
  const status = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const form = h('form', { class: 'stack', ...attrs }, status, children);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const buttons = form.querySelectorAll('button[type=submit]');
    buttons.forEach((b) => { b.disabled = true; });
    status.replaceChildren();
    try {
      await action(form);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      status.appendChild(errorBox(err));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}

/** A page heading with buttons at its right. */
export function heading(text, ...buttons) {
  return h('div', { class: 'row page-head' }, h('h1', null, text), h('span', { class: 'spacer' }), buttons);
}

/** A small button. */
export function smallButton(label, onclick, attrs = {}) {
  return h('button', { type: 'button', class: 'small' + (attrs.danger ? ' danger' : ''), onclick, 'aria-label': attrs.ariaLabel, disabled: attrs.disabled }, label);
}

/** Runs a change from a row's button: a toast on success, on failure too. */
export async function act(fn, okMessage) {
  try {
    await fn();
    if (okMessage) toast(okMessage);
    return true;
  } catch (e) {
    toast(e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : String(e.message || e), 'err');
    return false;
  }
}

/** A dialog that shows a new secret once (`label` names the field), with `extra` below it. */
export function secretDialog(title, label, secret, extra, onClose) {
  return dialog(title, h('div', null, secretField(label, secret), extra), { onClose });
}

/** A ready-to-paste snippet with a copy button. */
export function snippet(label, text) {
  const pre = h('pre', { class: 'snippet', 'aria-label': label }, text);
  const copy = h('button', {
    type: 'button',
    onclick: async () => {
      try { await navigator.clipboard.writeText(text); toast('Copied to the clipboard'); }
      catch { toast('Select the text and copy it', 'err'); }
    },
  }, 'Copy snippet');
  return h('div', null, h('h3', null, label), pre, copy);
}

/** A time, or a dash. */
export const when = (t) => (t ? fmtTime(t) : '—');

const PERIODS = [['daily', 'daily'], ['weekly', 'weekly'], ['monthly', 'monthly']];

/**
 * The inputs of limits and a budget, filled from `v` (a key, team or user view): `f` the
 * inputs by name, `layout` their two fieldsets.
 */
export function limitFields(v = {}) {
  const l = v.limits || {};
  const f = {
    requests_per_minute: input('requests_per_minute', { type: 'number', min: 1, step: 1, value: l.requests_per_minute ?? '' }),
    tokens_per_minute: input('tokens_per_minute', { type: 'number', min: 1, step: 1, value: l.tokens_per_minute ?? '' }),
    max_in_flight: input('max_in_flight', { type: 'number', min: 1, step: 1, value: l.max_in_flight ?? '' }),
    budget_usd: input('budget_usd', { type: 'number', min: 0.000001, step: 'any', value: v.budget ? v.budget.usd : '' }),
    budget_period: select('budget_period', PERIODS, v.budget ? v.budget.period : 'monthly', { id: `f-budget-period-${++seq}` }),
  };
  const layout = [
    h('fieldset', null, h('legend', null, 'Limits'), h('div', { class: 'row' },
      labelled('Requests per minute', f.requests_per_minute),
      labelled('Tokens per minute', f.tokens_per_minute),
      labelled('Requests in flight', f.max_in_flight))),
    h('fieldset', null, h('legend', null, 'Budget'), h('div', { class: 'row' },
      labelled('Budget (USD)', f.budget_usd),
      labelled('Budget period', f.budget_period))),
  ];
  return { f, layout };
}

/** The limits object of the fields; null when none is set. */
export function limitsOf(f) {
  const l = {
    requests_per_minute: parseCount('Requests per minute', f.requests_per_minute.value),
    tokens_per_minute: parseCount('Tokens per minute', f.tokens_per_minute.value),
    max_in_flight: parseCount('Requests in flight', f.max_in_flight.value),
  };
  return Object.values(l).some((v) => v !== null) ? l : null;
}

/** The budget of the fields; null when no amount is given. */
export function budgetOf(f) {
  const t = f.budget_usd.value.trim();
  if (!t) return null;
  const usd = Number(t);
  if (!(usd > 0)) throw new Error('The budget must be a positive number of dollars');
  return { usd, period: f.budget_period.value };
}

/** The limits and budget of a key, team or user view (`limits`, `budget`), as text. */
export function limitsText(k) {
  const out = [];
  const l = k.limits || {};
  if (l.requests_per_minute) out.push(`${l.requests_per_minute} req/min`);
  if (l.tokens_per_minute) out.push(`${l.tokens_per_minute} tok/min`);
  if (l.max_in_flight) out.push(`${l.max_in_flight} in flight`);
  if (k.budget) out.push(`${fmtUsd(k.budget.usd)} ${k.budget.period}`);
  return out.length ? out.join(' · ') : 'none';
}


/**
 * The dialog that sets a team's or user's own limits and budget (`PATCH path` with `limits`
 * and `budget`; empty fields clear them), binding every key and token of it.
 */
export function limitsDialog(what, v, path, refresh) {
  const { f, layout } = limitFields(v);
  let d;
  const form = actionForm({ 'aria-label': `Limits of ${what}` }, [
    h('p', { class: 'muted' }, `These bind every request accounted to ${what}, whatever key or token it comes with, besides each key's own. Leave a field empty for no limit.`),
    layout,
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Save limits')),
  ], async () => {
    const body = { limits: limitsOf(f), budget: budgetOf(f) };
    await api(path, { method: 'PATCH', body });
    d.close();
    toast(`Limits of ${what} saved`);
    refresh();
  });
  d = dialog(`Limits and budget of ${what}`, form);
  f.requests_per_minute.focus();
}

/**
 * The pager under a list that pages by cursor (`next` the answer's `next_cursor`): "First
 * page" once past it, "Next page" while there is more, and how many are shown.
 */
export function pager(path, query, next, shown, noun) {
  const go = (cursor) => {
    const q = new URLSearchParams(query);
    if (cursor) q.set('cursor', cursor); else q.delete('cursor');
    navigate(path + (q.toString() ? '?' + q : ''));
  };
  return h('div', { class: 'pager' },
    query.get('cursor') ? h('button', { type: 'button', onclick: () => go(null) }, 'First page') : null,
    next ? h('button', { type: 'button', onclick: () => go(next) }, 'Next page') : null,
    h('span', { class: 'muted' }, `${shown} ${noun}${shown === 1 ? '' : 's'}`));
}
