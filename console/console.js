// The support console's page: polls /console/api/live, shows alerts, a SKU,
// a supplier, and a chart; actions are POSTs with the session's CSRF token.
// Everything from the server is put in the page as text (textContent),
// never as HTML: alert reasons carry 1688's messages and SKU names come
// from any client.
'use strict';

const POLL_MS = 500;
let session = null;
let pollTimer = null;
let ackId = null;
let lastSku = null;
let lastSupplier = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function age(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d';
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : 'never';
}

function say(text, kind) {
  const s = $('status');
  s.textContent = text;
  s.className = 'status ' + (kind || '');
}

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method === 'POST' && session && session.csrf) opts.headers['X-CSRF-Token'] = session.csrf;
  const r = await fetch('/console/api/' + path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: 'no answer (' + r.status + ')' }; }
  return { status: r.status, data };
}

function errorText(res) {
  const d = res.data || {};
  let t = d.error || ('HTTP ' + res.status);
  if (d.code) t += ' [' + d.code + ']';
  if (d.nodes) {
    for (const n of d.nodes) if (n && n.error) t += ' — ' + n.node + ': ' + n.error;
  }
  return t;
}

// ---------------------------------------------------------------- session

function renderWho() {
  const who = $('who');
  who.textContent = '';
  if (session && session.signed_in) {
    who.append('Signed in as ', el('b', {}, session.name),
      el('button', { id: 'signout', onclick: signOut }, 'Sign out'));
  } else if (session && session.public_read) {
    who.append('Read only ', el('button', { id: 'show-signin', onclick: () => showSignin(true) },
      'Sign in'));
  }
}

function showSignin(on) {
  $('signin').hidden = !on;
  if (on) $('signin-token').focus();
}

async function loadSession() {
  const r = await api('GET', 'session');
  session = r.data;
  $('node').textContent = session.node ? '· ' + session.node : '';
  renderWho();
  const reads = session.signed_in || session.public_read;
  $('main').hidden = !reads;
  showSignin(!session.signed_in && !session.public_read);
  if (!session.can_sign_in) {
    $('signin-error').textContent = 'Nobody can sign in: stockd runs without a console token.';
  }
  if (reads) startPolling();
  else stopPolling();
}

async function signIn(ev) {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const body = { token: $('signin-token').value };
  const name = $('signin-name').value.trim();
  if (name) body.name = name;
  const r = await api('POST', 'login', body);
  $('signin-token').value = '';
  if (r.status !== 200) {
    $('signin-error').textContent = r.status === 401 ? 'Wrong token.' : errorText(r);
    return;
  }
  say('Signed in.', 'ok');
  await loadSession();
}

async function signOut() {
  await api('POST', 'logout', {});
  session = null;
  say('Signed out.');
  await loadSession();
}

// ---------------------------------------------------------------- live

function startPolling() {
  if (pollTimer === null) poll();
}

function stopPolling() {
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
}

async function poll() {
  pollTimer = -1;
  try {
    const r = await api('GET', 'live');
    if (r.status === 401) {
      stopPolling();
      await loadSession();
      return;
    }
    if (r.status === 200) render(r.data);
    else $('alerts-error').textContent = errorText(r);
  } catch (e) {
    $('alerts-error').textContent = 'stockd does not answer: ' + e.message;
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

function render(live) {
  $('alerts-error').textContent = live.alerts_error || '';
  if (live.alerts) renderAlerts(live.alerts, live.now);
  $('alerts-fresh').textContent = live.alerts_at ? 'read ' + age(live.now - live.alerts_at) + ' ago' : '';
  drawChart(live.rates || []);
}

function canAct() {
  return session && session.signed_in;
}

function renderAlerts(alerts, now) {
  const tbody = $('alerts').tBodies[0];
  const rows = [];
  for (const a of alerts) {
    const actions = el('td', { class: 'actions' });
    if (canAct()) {
      actions.append(el('button', { class: 'ack', onclick: () => openAck(a) }, 'Handled…'));
      if (a.order_id) {
        actions.append(' ', el('button', { class: 'release', onclick: () => release(a.order_id, a.sku) },
          'Release order'));
      }
      if (a.kind === 'mapping_broken') {
        actions.append(' ', el('button', { class: 'recheck', onclick: () => recheck(a.sku) },
          'Re-check mapping'));
      }
    }
    rows.push(el('tr', { dataset: { alertId: String(a.id) } },
      el('td', { class: 'age', title: when(a.at) }, age(now - a.at)),
      el('td', { class: 'kind' }, a.kind),
      el('td', {}, el('a', { class: 'link sku', onclick: () => showSku(a.sku) }, a.sku)),
      el('td', { class: 'order' }, a.order_id || ''),
      el('td', { class: 'reason' }, a.reason),
      actions));
  }
  tbody.replaceChildren(...rows);
  const c = $('alerts-count');
  c.textContent = String(alerts.length);
  c.className = 'count' + (alerts.length ? '' : ' zero');
  $('alerts-empty').hidden = alerts.length > 0;
  $('alerts').hidden = alerts.length === 0;
}

function drawChart(points) {
  const cv = $('chart');
  const ctx = cv.getContext('2d');
  const w = cv.width, h = cv.height, pad = 18;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (const p of points) max = Math.max(max, p[1], p[2]);
  ctx.strokeStyle = '#dde2ea';
  ctx.fillStyle = '#667085';
  ctx.font = '11px sans-serif';
  ctx.beginPath();
  ctx.moveTo(pad, h - pad + 0.5);
  ctx.lineTo(w, h - pad + 0.5);
  ctx.stroke();
  ctx.fillText(max.toFixed(max < 10 ? 1 : 0) + '/s', 2, 12);
  const line = (idx, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = pad + (w - pad) * (points.length > 1 ? i / (points.length - 1) : 1);
      const y = h - pad - (h - 2 * pad) * (p[idx] / max);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  };
  line(1, '#1f8a4c');
  line(2, '#c2372b');
  const last = points.length ? points[points.length - 1] : [0, 0, 0];
  $('rate-ok').textContent = last[1].toFixed(1);
  $('rate-bad').textContent = last[2].toFixed(1);
}

// ---------------------------------------------------------------- actions

function openAck(a) {
  ackId = a.id;
  $('ack-what').textContent = '#' + a.id + ' (' + a.kind + ', ' + a.sku + ')';
  $('ack-note').value = '';
  $('ack-dialog').showModal();
}

async function ackClosed() {
  const d = $('ack-dialog');
  if (d.returnValue !== 'ok' || ackId === null) return;
  const id = ackId;
  ackId = null;
  const body = { id };
  const note = $('ack-note').value.trim();
  if (note) body.note = note;
  const r = await api('POST', 'ack', body);
  if (r.status === 200) {
    const res = r.data.result || {};
    say(res.acked_now === false
      ? 'Alert #' + id + ' was already handled by ' + res.acked_by + '.'
      : 'Alert #' + id + ' marked handled.', 'ok');
    const row = document.querySelector('tr[data-alert-id="' + id + '"]');
    if (row) row.remove();
  } else {
    say('Could not mark alert #' + id + ' handled: ' + errorText(r), 'bad');
  }
}

async function release(orderId, sku) {
  if (!confirm('Release order ' + orderId + '? Its stock returns and the gateway sees "released".')) return;
  const body = { order_id: orderId };
  if (sku) body.sku = sku;
  const r = await api('POST', 'release', body);
  if (r.status === 200) say('Order ' + orderId + ' is ' + r.data.result.status + '.', 'ok');
  else say('Release of ' + orderId + ' failed: ' + errorText(r), 'bad');
  if (lastSku) showSku(lastSku);
}

async function recheck(sku) {
  const r = await api('POST', 'recheck', { sku });
  if (r.status === 200) {
    say(r.data.result.rechecking
      ? 'Asked 1688 about ' + sku + ' now; the SKU view shows the outcome in a moment.'
      : sku + ' has no 1688 mapping to re-check (or the supplier sync is off).', 'ok');
    setTimeout(() => showSku(sku), 1000);
  } else {
    say('Re-check of ' + sku + ' failed: ' + errorText(r), 'bad');
  }
}

async function applySupplier(id) {
  const body = { supplier_id: id, event_mode: $('sup-event').checked };
  const t = $('sup-trust').value, et = $('sup-event-trust').value;
  if (t !== '') body.trust = Number(t);
  if (et !== '') body.event_trust = Number(et);
  const r = await api('POST', 'supplier', body);
  if (r.status === 200) say('Supplier ' + id + ' updated on every instance.', 'ok');
  else say('Supplier ' + id + ': ' + errorText(r), 'bad');
  showSupplier(id);
}

// ---------------------------------------------------------------- views

function figures(pairs) {
  const dl = el('dl', { class: 'figures' });
  for (const [k, v, cls] of pairs) dl.append(el('dt', {}, k), el('dd', { class: cls || '' }, v));
  return dl;
}

async function showSku(sku) {
  lastSku = sku;
  $('sku-input').value = sku;
  const view = $('sku-view');
  const r = await api('GET', 'sku?sku=' + encodeURIComponent(sku));
  view.textContent = '';
  if (r.status !== 200) {
    view.append(el('p', { class: 'error' }, errorText(r)));
    return;
  }
  const d = r.data;
  const st = d.stock || {};
  if (st.result) {
    const s = st.result;
    const mapping = el('span', { class: 'badge ' + s.mapping, id: 'sku-mapping' }, s.mapping);
    view.append(figures([
      ['available', s.available, 'num'], ['mapping', mapping],
      ['own on hand', s.own_on_hand, 'num'], ['own reserved', s.own_reserved, 'num'],
      ['supplier reported', s.supplier_reported, 'num'], ['supplier sellable', s.supplier_sellable, 'num'],
      ['supplier reserved', s.supplier_reserved, 'num'],
      ['trust', s.trust === undefined ? '–' : s.trust.toFixed(2), 'num'],
      ['synced', s.supplier_synced_at ? age(Date.now() - s.supplier_synced_at) + ' ago' : 'never'],
    ]));
    if (s.supplier) {
      const m = s.supplier;
      view.append(el('p', {}, '1688: supplier ',
        el('a', { class: 'link', onclick: () => showSupplier(m.supplier_id) }, m.supplier_id),
        ', offer ' + m.offer_id + ', spec ' + m.spec_id + (m.cap !== undefined ? ', cap ' + m.cap : '') + ' ',
        canAct() ? el('button', { class: 'recheck', onclick: () => recheck(sku) }, 'Re-check mapping') : null));
    }
  } else {
    view.append(el('p', { class: 'error' }, 'Figures: ' + errorText({ status: 0, data: st })));
  }
  if (d.moves_error) view.append(el('p', { class: 'error' }, 'Orders: ' + d.moves_error));
  if (d.moves && d.moves.length) {
    const seen = new Set();
    const rows = [];
    for (const m of d.moves) {
      if (seen.has(m.order_id)) continue;
      seen.add(m.order_id);
      const live = m.status === 'held' || m.status === 'confirmed';
      rows.push(el('tr', {},
        el('td', {}, m.order_id), el('td', {}, m.status || '(gone)'),
        el('td', { class: 'num' }, m.qty), el('td', { class: 'num' }, m.from_own),
        el('td', { class: 'num' }, m.from_supplier), el('td', {}, m.move),
        el('td', { title: when(m.at) }, age(Date.now() - m.at)),
        el('td', { class: 'reason' }, m.reason || ''),
        el('td', {}, live && canAct()
          ? el('button', { class: 'release', onclick: () => release(m.order_id, sku) }, 'Release') : null)));
      if (rows.length >= 10) break;
    }
    view.append(el('h3', {}, 'Recent orders'), el('table', {},
      el('thead', {}, el('tr', {}, ...['order', 'status', 'qty', 'own', 'supplier', 'last move', 'age', 'reason', '']
        .map((t) => el('th', {}, t)))),
      el('tbody', {}, ...rows)));
  } else if (d.moves) {
    view.append(el('p', { class: 'muted' }, 'No orders yet.'));
  }
}

async function showSupplier(id) {
  lastSupplier = id;
  $('supplier-input').value = id;
  const view = $('supplier-view');
  const r = await api('GET', 'supplier?id=' + encodeURIComponent(id));
  view.textContent = '';
  if (r.status !== 200) {
    view.append(el('p', { class: 'error' }, errorText(r)));
    return;
  }
  const d = r.data;
  const rows = [];
  let first = null;
  for (const n of d.nodes || []) {
    if (n && n.result) {
      const t = n.result;
      first = first || t;
      rows.push(el('tr', {}, el('td', {}, n.node), el('td', { class: 'num' }, t.trust.toFixed(2)),
        el('td', { class: 'num' }, t.trust_ceiling.toFixed(2)),
        el('td', {}, t.event_mode ? el('span', { class: 'badge event' }, 'event') : 'normal'),
        el('td', { class: 'num' }, t.event_trust.toFixed(2)),
        el('td', { class: 'num' }, el('b', {}, t.effective.toFixed(2)))));
    } else if (n) {
      rows.push(el('tr', {}, el('td', {}, n.node), el('td', { colspan: '5', class: 'error' }, n.error)));
    }
  }
  view.append(el('table', { id: 'supplier-nodes' },
    el('thead', {}, el('tr', {}, ...['instance', 'trust', 'ceiling', 'mode', 'event trust', 'effective']
      .map((t) => el('th', {}, t)))),
    el('tbody', {}, ...rows)));
  if (canAct()) {
    view.append(el('div', { class: 'settings' },
      el('label', {}, el('input', { type: 'checkbox', id: 'sup-event' }), ' event mode'),
      el('label', {}, 'trust ', el('input', { type: 'number', id: 'sup-trust', min: '0', max: '1', step: '0.05' })),
      el('label', {}, 'event trust ', el('input', { type: 'number', id: 'sup-event-trust', min: '0', max: '1', step: '0.05' })),
      el('button', { id: 'sup-apply', onclick: () => applySupplier(id) }, 'Apply on every instance')));
    if (first) {
      $('sup-event').checked = !!first.event_mode;
      $('sup-trust').value = first.trust;
      $('sup-event-trust').value = first.event_trust;
    }
  }
  if (d.alerts_error) view.append(el('p', { class: 'error' }, 'Failures: ' + d.alerts_error));
  if (d.alerts) {
    view.append(el('h3', {}, 'Recent failures and alerts'));
    if (!d.alerts.length) view.append(el('p', { class: 'muted' }, 'None.'));
    else {
      view.append(el('table', {}, el('tbody', {}, ...d.alerts.map((a) => el('tr', {},
        el('td', { title: when(a.at) }, age(Date.now() - a.at)), el('td', { class: 'kind' }, a.kind),
        el('td', {}, a.sku), el('td', {}, a.order_id || ''), el('td', { class: 'reason' }, a.reason),
        el('td', { class: 'muted' }, a.acked_by ? 'handled by ' + a.acked_by : 'open'))))));
    }
  }
}

// ---------------------------------------------------------------- wiring

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('ack-dialog').addEventListener('close', ackClosed);
  $('sku-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('sku-input').value.trim();
    if (v) showSku(v);
  });
  $('supplier-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('supplier-input').value.trim();
    if (v) showSupplier(v);
  });
  loadSession().catch((e) => say('stockd does not answer: ' + e.message, 'bad'));
});
