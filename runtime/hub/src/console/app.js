// busbar hub web console: a small single-page app (hash routes) over the hub's admin API
// (/v1/admin/...). The hub serves it at /console/ under a strict Content-Security-Policy
// (default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; ...), so:
// no inline scripts, no style attributes (only CSS classes), no eval/new Function, no
// third-party code, no build step. Every text from the API reaches the DOM through
// textContent/createElement, never innerHTML. The admin token is kept in sessionStorage
// ('busbar-admin-token') and only sent as an `Authorization: Bearer` header; a 401 from any
// call logs out.
'use strict';

(() => {
  const TOKEN_KEY = 'busbar-admin-token';
  const PAGE_SIZE = 100;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
  const TROUBLE = new Set(['rolled-back', 'refused']);
  const DAY_MS = 86400000;

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // ---- DOM helpers (text only through textContent / text nodes)

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  /** An HTML element; string children become text nodes. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  /** An SVG element. */
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    setAttrs(e, attrs);
    if (text != null) e.textContent = text;
    return e;
  }

  // ---- formatting

  const pad = (n) => String(n).padStart(2, '0');
  let clockSkew = 0; // hub clock minus this browser's clock, from summary.now_ms
  const hubNow = () => Date.now() + clockSkew;

  function hhmm(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  /** Local HH:MM:SS, with the date in front when older than a day. */
  function fmtTime(ms) {
    if (ms == null || !Number.isFinite(ms)) return '—';
    const d = new Date(ms);
    const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (hubNow() - ms < DAY_MS) return t;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
  }

  function ago(ms) {
    if (ms == null) return 'never';
    const s = Math.max(0, Math.round((hubNow() - ms) / 1000));
    if (s < 120) return `${s} s ago`;
    const m = Math.round(s / 60);
    if (m < 120) return `${m} min ago`;
    const h = Math.round(m / 60);
    if (h < 48) return `${h} h ago`;
    return `${Math.round(h / 24)} d ago`;
  }

  const short = (sha, n) => (typeof sha === 'string' && sha ? sha.slice(0, n) : '—');
  const fmtNum = (v) => (typeof v === 'number' && Number.isFinite(v) ? String(Math.round(v * 100) / 100) : '—');
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const nodeHref = (id) => `#/node/${enc(id)}`;

  function nodeState(r) {
    if (r.revoked) return 'revoked';
    if (r.online) return 'online';
    return r.last_seen_ms == null ? 'never' : 'offline';
  }

  const badge = (state) => el('span', { class: `badge ${state}` }, state);

  function setResult(p, ok, text) {
    p.textContent = text;
    p.classList.toggle('ok', ok === true);
    p.classList.toggle('fail', ok === false);
  }

  // ---- token

  let memToken = null; // only used when sessionStorage is unavailable
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (_) { return memToken; }
  }
  function setToken(t) {
    try {
      if (t == null) sessionStorage.removeItem(TOKEN_KEY); else sessionStorage.setItem(TOKEN_KEY, t);
    } catch (_) { memToken = t; }
  }

  // ---- API

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /** The hub's error text: `{"error": "..."}`, else the body, else the status. */
  async function errorText(res) {
    let text = '';
    try { text = await res.text(); } catch (_) { /* keep empty */ }
    try {
      const j = JSON.parse(text);
      if (j && typeof j.error === 'string') return j.error;
    } catch (_) { /* not JSON */ }
    text = text.trim();
    return text ? text.slice(0, 500) : `HTTP ${res.status} ${res.statusText}`.trim();
  }

  async function request(path, token, opts = {}) {
    const headers = Object.assign({ Authorization: `Bearer ${token}` }, opts.headers);
    let body = opts.body;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    let res;
    try {
      res = await fetch(path, { method: opts.method || 'GET', headers, body, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, `cannot reach the hub (${e && e.message ? e.message : e})`);
    }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    return res;
  }

  /** A call with the stored token; a 401 logs out. */
  async function api(path, opts) {
    const token = getToken();
    if (!token) {
      showLogin('');
      throw new ApiError(401, 'not signed in');
    }
    try {
      return await request(path, token, opts);
    } catch (e) {
      if (e.status === 401) logout(`logged out: ${e.message}`);
      throw e;
    }
  }

  const apiJson = async (path, opts) => (await api(path, opts)).json();

  // ---- error banner

  let errorKind = null; // 'refresh' errors clear on the next good refresh; 'action' ones stay
  function showError(msg, kind) {
    $('error').textContent = msg;
    $('error-banner').hidden = false;
    errorKind = kind || 'action';
  }
  function clearError(kind) {
    if (kind && errorKind !== kind) return;
    $('error').textContent = '';
    $('error-banner').hidden = true;
    errorKind = null;
  }
  function reportError(e, kind, what) {
    if (e && e.status === 401) return; // the login form shows it
    const msg = e && e.message ? e.message : String(e);
    showError(what ? `${what}: ${msg}` : msg, kind);
  }

  // ---- polling: each view's refreshers stop when the view changes (gen bumps)

  let gen = 0;
  const timers = new Set();

  function stopAll() {
    gen++;
    for (const t of timers) clearTimeout(t);
    timers.clear();
  }

  /** Runs fn(my) now and every ms after it finishes, while the view is the same. */
  function poll(fn, ms, what) {
    const my = gen;
    const later = () => {
      const t = setTimeout(() => { timers.delete(t); tick(); }, ms);
      timers.add(t);
    };
    const tick = async () => {
      if (my !== gen) return;
      if (document.hidden) { later(); return; }
      try {
        await fn(my);
        if (my === gen) clearError('refresh');
      } catch (e) {
        if (my === gen) reportError(e, 'refresh', what);
      }
      if (my === gen) later();
    };
    tick();
  }

  // ---- SVG line plot

  /** Draws points [[time_ms, value], ...] (oldest first) of the last spanMs into svg, as
   * wide as it is shown; the time axis is the whole span, ending now. */
  function plot(svg, points, label, spanMs) {
    const W = Math.max(320, Math.round(svg.clientWidth || 640)), H = 170, L = 64, R = 14, T = 14, B = 26;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const end = hubNow(), start = end - spanMs;
    const pts = points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]) && p[0] >= start);
    const kids = [];
    kids.push(svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
    kids.push(svgEl('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    if (!pts.length) {
      kids.push(svgEl('text', { class: 'lbl mid plot-empty', x: (L + W - R) / 2, y: (T + H - B) / 2 }, 'no data yet'));
      svg.replaceChildren(...kids);
      svg.setAttribute('aria-label', `${label}: no data yet`);
      return;
    }
    const x0 = start, x1 = end;
    const dataMax = Math.max(...pts.map((p) => p[1]));
    const yMax = dataMax > 0 ? dataMax : 1;
    const sx = (x) => (x1 === x0 ? W - R : L + ((x - x0) / (x1 - x0)) * (W - L - R));
    const sy = (y) => H - B - (Math.max(0, y) / yMax) * (H - B - T);
    const xy = pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
    kids.push(svgEl('line', { class: 'grid', x1: L, y1: T, x2: W - R, y2: T }));
    kids.push(svgEl('polygon', {
      class: 'area',
      points: `${sx(pts[0][0]).toFixed(1)},${H - B} ${xy.join(' ')} ${sx(pts[pts.length - 1][0]).toFixed(1)},${H - B}`,
    }));
    kids.push(svgEl('polyline', { class: 'line', points: xy.join(' ') }));
    if (pts.length === 1) {
      kids.push(svgEl('circle', { class: 'dot', cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 3 }));
    }
    kids.push(svgEl('text', { class: 'lbl end y-max', x: L - 6, y: T + 4 }, fmtNum(yMax)));
    kids.push(svgEl('text', { class: 'lbl end y-min', x: L - 6, y: H - B + 4 }, '0'));
    kids.push(svgEl('text', { class: 'lbl start x-min', x: L, y: H - 8 }, hhmm(x0)));
    kids.push(svgEl('text', { class: 'lbl end x-max', x: W - R, y: H - 8 }, hhmm(x1)));
    svg.replaceChildren(...kids);
    const last = pts[pts.length - 1][1];
    svg.setAttribute('aria-label',
      `${label} from ${hhmm(x0)} to ${hhmm(x1)}: latest ${fmtNum(last)}, max ${fmtNum(dataMax)}`);
  }

  // ---- fleet view

  let pageAfters = []; // the `after` of each page shown so far; the last is the current page
  let fleetNext = null;
  let tagsKey = '';

  function renderSummary(s) {
    const n = s.nodes || {};
    for (const k of ['total', 'online', 'offline', 'never', 'revoked', 'trouble']) {
      $(`count-${k}`).textContent = String(n[k] ?? 0);
    }
    const versions = (s.versions || []).map((v) => `${v.version} on ${v.nodes}`);
    $('versions').textContent = versions.length ? `busbar versions: ${versions.join(' · ')}` : '';
    plot($('plot-online'), (s.online_series || []).map((p) => [p.at_ms, p.online]), 'Nodes online', 24 * 3600 * 1000);

    const tags = s.tags || [];
    const key = JSON.stringify(tags);
    if (key !== tagsKey) { // rebuild only on change, so an open dropdown stays open
      tagsKey = key;
      const sel = $('filter-tag');
      const cur = sel.value;
      const opts = [el('option', { value: '' }, 'all tags')];
      for (const t of tags) opts.push(el('option', { value: t.tag }, `${t.tag} (${t.online}/${t.nodes} online)`));
      if (cur && !tags.some((t) => t.tag === cur)) opts.push(el('option', { value: cur }, cur));
      sel.replaceChildren(...opts);
      sel.value = cur;
    }
  }

  function svcSpan(s) {
    return el('span', { class: 'svc', 'data-service': s.name, 'data-state': s.state },
      `${s.name} `,
      el('span', { class: 'sha', title: s.sha256 || null }, short(s.sha256, 7)),
      ` ${s.state ?? ''} (${s.restarts ?? 0} restarts)`);
  }

  function nodeRow(r) {
    const ident = r.identity || {};
    const services = (r.status && r.status.services) || [];
    const trouble = r.trouble === true;
    return el('tr', { 'data-node': r.node_id, class: trouble ? 'trouble' : null },
      el('td', null, el('a', { href: nodeHref(r.node_id) }, r.node_id)),
      el('td', null, badge(nodeState(r)), r.debug ? el('span', { class: 'badge debug' }, 'debug') : null),
      el('td', { title: r.last_seen_ms != null ? fmtTime(r.last_seen_ms) : null }, ago(r.last_seen_ms)),
      el('td', null, ident.target || '—'),
      el('td', null, ident.runtime_version || '—'),
      el('td', { class: 'num' }, fmtNum(r.messages_per_s)),
      el('td', { class: 'svcs' }, ...services.map(svcSpan)));
  }

  async function loadFleet(my) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), events: '3' });
    const state = $('filter-state').value, tag = $('filter-tag').value, text = $('filter-q').value.trim();
    if (state) q.set('state', state);
    if (tag) q.set('tag', tag);
    if (text) q.set('q', text);
    const after = pageAfters[pageAfters.length - 1];
    if (after) q.set('after', after);
    // The summary is shown even when the listing is refused (e.g. a bad filter).
    const [summary, listed] = await Promise.allSettled([
      apiJson('/v1/admin/summary'),
      api(`/v1/admin/nodes?${q}`).then(async (res) => [res, await res.json()]),
    ]);
    if (my !== gen) return;
    if (summary.status === 'rejected') throw summary.reason;
    if (Number.isFinite(summary.value.now_ms)) clockSkew = summary.value.now_ms - Date.now();
    renderSummary(summary.value);
    if (listed.status === 'rejected') {
      $('nodes').tBodies[0].replaceChildren();
      $('nodes-empty').hidden = false;
      throw listed.reason;
    }
    const [res, nodes] = listed.value;
    $('nodes').tBodies[0].replaceChildren(...nodes.map(nodeRow));
    $('nodes-empty').hidden = nodes.length > 0;
    fleetNext = res.headers.get('x-busbar-next-after');
    $('next-page').disabled = !fleetNext;
    $('page-info').textContent =
      `page ${pageAfters.length + 1} · ${nodes.length} node${nodes.length === 1 ? '' : 's'}`;
  }

  function refilter() {
    pageAfters = [];
    if (current && current.view === 'fleet') restart();
  }

  // ---- node view

  let nodeDebug = null; // the shown record's `debug`
  let logsEmpty = true;

  function resetNode(id) {
    $('node-title').textContent = id;
    $('identity').replaceChildren();
    $('services').tBodies[0].replaceChildren();
    $('events').tBodies[0].replaceChildren();
    $('plot-messages').replaceChildren();
    $('logs').textContent = '';
    $('logs-note').textContent = '';
    nodeDebug = null;
    logsEmpty = true;
    $('debug-toggle').disabled = true;
    $('revoke').disabled = true;
  }

  function updateLogsNote() {
    const note = $('logs-note');
    if (nodeDebug === false) note.textContent = 'debug is off: the node forwards no logs';
    else if (nodeDebug === true && logsEmpty) note.textContent = 'debug is on: waiting for log lines';
    else note.textContent = '';
    note.hidden = note.textContent === '';
  }

  function emptyRow(cols, text) {
    return el('tr', { class: 'empty' }, el('td', { colspan: cols }, text));
  }

  function renderNode(r) {
    const ident = r.identity || {};
    const state = nodeState(r);
    const fields = [
      ['hostname', 'Hostname', ident.hostname || '—'],
      ['target', 'Target', ident.target || '—'],
      ['version', 'Busbar version', ident.runtime_version || '—'],
      ['last-seen', 'Last seen', r.last_seen_ms == null ? 'never' : `${ago(r.last_seen_ms)} (${fmtTime(r.last_seen_ms)})`],
      ['tags', 'Tags', (r.tags || []).length ? r.tags.join(', ') : '—'],
      ['online', 'State', badge(state)],
      ['debug', 'Debug', r.debug ? 'on' : 'off'],
    ];
    if (Array.isArray(ident.macs) && ident.macs.length) fields.push(['macs', 'MACs', ident.macs.join(', ')]);
    const dl = [];
    for (const [key, name, value] of fields) {
      dl.push(el('dt', null, name), el('dd', { 'data-field': key }, value));
    }
    $('identity').replaceChildren(...dl);

    nodeDebug = !!r.debug;
    const dbg = $('debug-toggle');
    dbg.textContent = nodeDebug ? 'Turn debug off' : 'Turn debug on';
    dbg.setAttribute('aria-pressed', String(nodeDebug));
    // A revoked node hears nothing more from the hub: no debug to switch.
    if (!dbg.classList.contains('busy')) dbg.disabled = !!r.revoked;
    const rev = $('revoke');
    rev.textContent = r.revoked ? 'Revoked' : 'Revoke';
    if (!rev.classList.contains('busy')) rev.disabled = !!r.revoked;
    updateLogsNote();

    const services = (r.status && r.status.services) || [];
    $('services').tBodies[0].replaceChildren(...(services.length
      ? services.map((s) => el('tr', { 'data-service': s.name, 'data-state': s.state },
        el('td', null, s.name),
        el('td', { class: 'sha', title: s.sha256 || null }, short(s.sha256, 12)),
        el('td', { class: 'state' }, s.state),
        el('td', { class: 'num' }, String(s.restarts ?? 0)),
        el('td', { class: 'num' }, s.processed == null ? '—' : String(s.processed))))
      : [emptyRow(5, r.status ? 'no services' : 'no report from the node yet')]));

    const events = (r.events || []).slice().reverse().sort((a, b) => (b.at_ms || 0) - (a.at_ms || 0));
    $('events').tBodies[0].replaceChildren(...(events.length
      ? events.map((e) => el('tr', { class: TROUBLE.has(e.kind) ? 'trouble' : null, 'data-kind': e.kind },
        el('td', null, fmtTime(e.at_ms)),
        el('td', null, e.service),
        el('td', { class: 'kind' }, e.kind),
        el('td', { class: 'sha', title: e.sha256 || null }, short(e.sha256, 12)),
        el('td', { class: 'detail' }, e.detail || '')))
      : [emptyRow(5, 'no events')]));

    plot($('plot-messages'), (r.series || []).map((p) => [p.at_ms, p.messages_per_s]), 'Messages per second', 3600 * 1000);
  }

  async function loadNode(id, my) {
    const r = await apiJson(`/v1/admin/nodes/${enc(id)}`);
    if (my !== gen) return;
    renderNode(r);
  }

  async function loadLogs(id, my) {
    const res = await api(`/v1/admin/nodes/${enc(id)}/logs?tail_bytes=65536`);
    const text = await res.text();
    if (my !== gen) return;
    const pre = $('logs');
    if (pre.textContent !== text) {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = text;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    logsEmpty = text.length === 0;
    updateLogsNote();
  }

  /** Runs a node action with its button disabled; refreshes the page after. */
  async function nodeAction(btn, what, path, json) {
    const id = current && current.id;
    if (!id) return;
    btn.disabled = true;
    btn.classList.add('busy');
    try {
      await api(`/v1/admin/nodes/${enc(id)}/${path}`, { method: 'POST', json });
      clearError('action');
      btn.classList.remove('busy');
      btn.disabled = false;
      if (current && current.view === 'node' && current.id === id) restart();
    } catch (e) {
      reportError(e, 'action', `${what} ${id}`);
      btn.classList.remove('busy');
      btn.disabled = false;
    }
  }

  // ---- rollout view

  let rolloutKey = '';

  function table(cls, heads, rows) {
    return el('table', { class: cls },
      el('thead', null, el('tr', null, ...heads.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', null, ...rows));
  }

  function nodeLinks(ids) {
    const out = [];
    ids.forEach((id, i) => {
      if (i) out.push(', ');
      out.push(el('a', { href: nodeHref(id) }, id));
    });
    return out;
  }

  function rolloutSection(s) {
    const published = s.published || [], versions = s.versions || [], flagged = s.flagged || [];
    const sec = el('section', { class: 'rollout', 'data-service': s.service },
      el('h2', null, s.service, flagged.length ? el('span', { class: 'badge trouble' }, `${flagged.length} flagged`) : null));

    sec.append(el('h3', null, 'Published'), published.length
      ? table('published', ['Manifest', 'Version (sha256)', 'Enabled'], published.map((p) =>
        el('tr', { 'data-manifest': p.manifest },
          el('td', null, p.manifest),
          el('td', { class: 'sha', title: p.sha256 || null }, short(p.sha256, 12)),
          el('td', null, p.enabled === false ? 'no' : 'yes'))))
      : el('p', { class: 'muted' }, 'Not in any manifest.'));

    sec.append(el('h3', null, 'Running'), versions.length
      ? table('versions', ['Version (sha256)', 'Nodes', 'Which'], versions.map((v) => {
        const ids = v.nodes || [];
        const more = (v.count || 0) - ids.length;
        return el('tr', { 'data-sha256': v.sha256 },
          el('td', { class: 'sha', title: v.sha256 || null }, short(v.sha256, 12)),
          el('td', { class: 'num' }, String(v.count ?? ids.length)),
          el('td', { class: 'node-list' }, ...nodeLinks(ids), more > 0 ? ` and ${more} more` : null));
      }))
      : el('p', { class: 'muted' }, 'No node runs it.'));

    sec.append(el('h3', null, 'Flagged'), flagged.length
      ? table('flags', ['Node', 'Kind', 'Version (sha256)', 'Time', 'Detail'], flagged.map((f) =>
        el('tr', { class: 'flagged', 'data-node': f.node, 'data-kind': f.kind },
          el('td', null, el('a', { href: nodeHref(f.node) }, f.node)),
          el('td', { class: 'kind' }, f.kind),
          el('td', { class: 'sha', title: f.sha256 || null }, short(f.sha256, 12)),
          el('td', null, fmtTime(f.at_ms)),
          el('td', { class: 'detail' }, f.detail || ''))))
      : el('p', { class: 'muted' }, 'No flagged nodes.'));
    return sec;
  }

  async function loadRollout(my) {
    const data = await apiJson('/v1/admin/rollout');
    if (my !== gen) return;
    const key = JSON.stringify(data);
    if (key === rolloutKey && $('rollout-list').childElementCount) return;
    rolloutKey = key;
    const services = data.services || [];
    $('rollout-list').replaceChildren(...(services.length
      ? services.map(rolloutSection)
      : [el('p', { class: 'muted' }, 'Nothing published yet.')]));
  }

  // ---- publish view

  let entryList = []; // the entries behind #entry-version's options (value = index)

  async function loadEntryServices(my) {
    const data = await apiJson('/v1/admin/rollout');
    if (my !== gen) return;
    const names = [...new Set((data.services || []).map((s) => s.service))].sort();
    const sel = $('entry-service');
    const cur = sel.value;
    sel.replaceChildren(...(names.length
      ? names.map((n) => el('option', { value: n }, n))
      : [el('option', { value: '' }, 'no services published')]));
    sel.value = names.includes(cur) ? cur : (names[0] || '');
    await loadEntries(sel.value, my);
  }

  async function loadEntries(service, my) {
    const vsel = $('entry-version');
    const was = entryList[Number(vsel.value)];
    const keep = vsel.value !== '' && was && was.entry ? was.entry.signature : null;
    entryList = [];
    if (!service) { vsel.replaceChildren(); return; }
    vsel.replaceChildren(el('option', { value: '' }, 'loading…'));
    const got = await apiJson(`/v1/admin/entries?service=${enc(service)}`);
    if (my !== gen || $('entry-service').value !== service) return;
    entryList = Array.isArray(got) ? got : [];
    vsel.replaceChildren(...(entryList.length
      ? entryList.map((x, i) => el('option', { value: String(i), 'data-sha256': x.entry && x.entry.sha256 },
        `${short(x.entry && x.entry.sha256, 12)} · published ${fmtTime(x.published_ms)} · ${
          x.entry && x.entry.enabled === false ? 'disabled' : 'enabled'}`))
      : [el('option', { value: '' }, 'no versions held')]));
    const again = keep == null ? -1 : entryList.findIndex((x) => x.entry && x.entry.signature === keep);
    if (again >= 0) vsel.value = String(again);
  }

  const targetsText = (m) => (Array.isArray(m) && m.length ? m.join(', ') : 'all nodes');

  /** Runs a form's action with its button disabled, the outcome in its result paragraph. */
  async function formAction(btn, out, fn) {
    btn.disabled = true;
    setResult(out, null, 'working…');
    try {
      setResult(out, true, await fn());
      loadEntryServices(gen).catch((e) => reportError(e, 'refresh', 'services'));
    } catch (e) {
      if (e && e.status === 401) setResult(out, null, '');
      else setResult(out, false, e && e.message ? e.message : String(e));
    } finally {
      btn.disabled = false;
    }
  }

  /** An ApiError with a step in front ("upload failed: ..."); other errors as they are. */
  async function step(name, promise) {
    try { return await promise; } catch (e) {
      if (e instanceof ApiError && e.status !== 401) throw new ApiError(e.status, `${name} failed: ${e.message}`);
      throw e;
    }
  }

  async function publishBundle() {
    const bf = $('bundle-file').files[0], cf = $('component-file').files[0];
    if (!bf || !cf) throw new Error('choose the signed bundle (.json) and the component (.wasm)');
    let bundle;
    try { bundle = JSON.parse(await bf.text()); } catch (e) {
      throw new Error(`${bf.name} is not JSON: ${e.message}`);
    }
    const entry = bundle && bundle.entry, sig = bundle && bundle.component_signature;
    if (!entry || typeof entry !== 'object' || typeof entry.sha256 !== 'string' || !entry.sha256
      || typeof sig !== 'string' || !/^[\x20-\x7e]+$/.test(sig)) {
      throw new Error(`${bf.name} is not a signed bundle: expected {"entry": {...}, "component_signature": "<hex>"}`);
    }
    const bytes = await cf.arrayBuffer();
    await step('upload', api(`/v1/admin/blobs/${enc(entry.sha256)}`, {
      method: 'PUT',
      headers: { 'x-busbar-signature': sig, 'Content-Type': 'application/octet-stream' },
      body: bytes,
    }));
    const nodes = list($('publish-nodes').value), tags = list($('publish-tags').value);
    const res = await step('publish', apiJson('/v1/admin/publish', { method: 'POST', json: { service: entry, nodes, tags } }));
    return `published ${entry.name} ${short(entry.sha256, 12)} to ${targetsText(res && res.manifests)}`;
  }

  async function publishEntry() {
    const idx = $('entry-version').value;
    const x = idx === '' ? null : entryList[Number(idx)];
    if (!x || !x.entry) throw new Error('choose a service and a version');
    const nodes = list($('entry-nodes').value), tags = list($('entry-tags').value);
    const res = await step('publish', apiJson('/v1/admin/publish', { method: 'POST', json: { service: x.entry, nodes, tags } }));
    return `published ${x.entry.name} ${short(x.entry.sha256, 12)} to ${targetsText(res && res.manifests)}`;
  }

  async function removeService() {
    const service = $('remove-service').value.trim();
    if (!service) throw new Error('enter the name of the service to remove');
    const nodes = list($('remove-nodes').value), tags = list($('remove-tags').value);
    const where = nodes.length || tags.length ? 'the nodes and tags named' : 'every node';
    if (!window.confirm(`Remove ${service} from ${where}? Their nodes stop it.`)) return 'not removed';
    const res = await step('remove', apiJson('/v1/admin/remove', { method: 'POST', json: { service, nodes, tags } }));
    return `removed ${service} from ${targetsText(res && res.manifests)}`;
  }

  // ---- routing and login

  let current = null; // {view, id}

  function parseHash() {
    const h = location.hash.replace(/^#/, '');
    if (h === '' || h === '/') return { view: 'fleet' };
    if (h === '/rollout') return { view: 'rollout' };
    if (h === '/publish') return { view: 'publish' };
    const m = /^\/node\/(.+)$/.exec(h);
    if (m) {
      let id = m[1];
      try { id = decodeURIComponent(id); } catch (_) { /* keep it raw */ }
      return { view: 'node', id };
    }
    return { view: 'fleet' };
  }

  function start(r) {
    switch (r.view) {
      case 'fleet':
        poll(loadFleet, 5000, 'fleet');
        break;
      case 'node':
        if (!ID_RE.test(r.id)) {
          showError(`not a node id: ${r.id}`, 'action');
          break;
        }
        poll((my) => loadNode(r.id, my), 3000, `node ${r.id}`);
        poll((my) => loadLogs(r.id, my), 2000, `logs of ${r.id}`);
        break;
      case 'rollout':
        poll(loadRollout, 5000, 'rollout');
        break;
      case 'publish':
        loadEntryServices(gen).catch((e) => reportError(e, 'refresh', 'services'));
        break;
      default:
    }
  }

  function restart() {
    stopAll();
    if (current) start(current);
  }

  function route() {
    if (!getToken()) { showLogin(''); return; }
    const r = parseHash();
    stopAll();
    clearError();
    current = r;
    $('view-login').hidden = true;
    $('nav').hidden = false;
    for (const v of ['fleet', 'node', 'rollout', 'publish']) $(`view-${v}`).hidden = v !== r.view;
    const navView = r.view === 'node' ? 'fleet' : r.view;
    for (const a of document.querySelectorAll('#nav a[data-route]')) {
      if (a.dataset.route === navView) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (r.view === 'node') resetNode(r.id);
    if (r.view === 'rollout') rolloutKey = '';
    document.title = r.view === 'node' ? `${r.id} · busbar hub` : `${r.view} · busbar hub`;
    start(r);
  }

  function showLogin(msg) {
    stopAll();
    current = null;
    clearError();
    for (const v of ['fleet', 'node', 'rollout', 'publish']) $(`view-${v}`).hidden = true;
    $('nav').hidden = true;
    $('view-login').hidden = false;
    $('login-error').textContent = msg || '';
    document.title = 'busbar hub';
    $('token').focus();
  }

  function logout(msg) {
    setToken(null);
    showLogin(msg);
  }

  async function login(ev) {
    ev.preventDefault();
    const out = $('login-error');
    const token = $('token').value.trim();
    if (!token) { out.textContent = 'enter the admin token'; return; }
    if (!/^[\x21-\x7e]+$/.test(token)) {
      out.textContent = 'wrong token: it has characters an HTTP header cannot carry';
      return;
    }
    out.textContent = '';
    $('login').disabled = true;
    try {
      await request('/v1/admin/summary', token);
      setToken(token);
      $('token').value = '';
      route();
    } catch (e) {
      out.textContent = e.status === 401 ? `wrong token: ${e.message}` : e.message;
    } finally {
      $('login').disabled = false;
    }
  }

  function init() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', () => logout(''));
    $('error-dismiss').addEventListener('click', () => clearError());
    window.addEventListener('hashchange', route);

    $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); refilter(); });
    $('filter-state').addEventListener('change', refilter);
    $('filter-tag').addEventListener('change', refilter);
    let typing = null;
    $('filter-q').addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(refilter, 300);
    });
    $('next-page').addEventListener('click', () => {
      if (!fleetNext) return;
      pageAfters.push(fleetNext);
      restart();
    });
    $('first-page').addEventListener('click', () => { pageAfters = []; restart(); });

    $('debug-toggle').addEventListener('click', (ev) => {
      if (nodeDebug == null) return;
      nodeAction(ev.currentTarget, 'debug', 'debug', { on: !nodeDebug });
    });
    $('revoke').addEventListener('click', (ev) => {
      const id = current && current.id;
      if (!id) return;
      if (!window.confirm(`Revoke node ${id}? The hub refuses its token from now on.`)) return;
      nodeAction(ev.currentTarget, 'revoke', 'revoke', undefined);
    });

    $('publish-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      formAction($('publish'), $('publish-result'), publishBundle);
    });
    $('entry-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      formAction($('publish-entry'), $('entry-result'), publishEntry);
    });
    $('entry-service').addEventListener('change', () => {
      loadEntries($('entry-service').value, gen).catch((e) => reportError(e, 'refresh', 'versions'));
    });
    $('remove-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      formAction($('remove'), $('remove-result'), removeService);
    });

    if (getToken()) route(); else showLogin('');
  }

  init();
})();
