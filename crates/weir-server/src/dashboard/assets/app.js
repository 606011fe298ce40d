// The dashboard: login, the live feed, and three views (pipelines, one pipeline, agents and
// tasks). Views build their DOM once and then change only the texts and attributes that
// differ. The feed sends only the pipelines that changed; the page renders at most once per
// animation frame (none while the tab is hidden), and the list touches only the rows whose
// pipeline changed, so 50 pipelines updated every second stay cheap.

import { call, reason, setToken, subscribe, token, Unauthorized } from './api.js';
import { drawChart, drawGraph, fmtRate } from './graph.js';

const SPAN_MS = 5 * 60 * 1000; // the throughput chart's window
const $ = (id) => document.getElementById(id);

const state = {
  role: null,
  feed: null,
  view: null,
  shown: false, // whether a snapshot was rendered yet
  snap: null, // latest snapshot: Map name -> pipeline (the feed's changes merged in)
  dirty: new Set(), // pipelines whose numbers changed since the last render
  frame: 0, // the pending animation frame's id, 0 if none
  prev: new Map(), // name -> {t, in, out, ops: Map name -> op, cp}
  rates: new Map(), // name -> {i, o, ops: Map name -> {i, o, busy}}
  history: new Map(), // name -> [{t, i, o}]
};

/** Element builder: h('td', {class: 'num'}, 'text', child, ...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

function setStatus(node, status) {
  setText(node, status);
  const cls = `status ${status}`;
  if (node.className !== cls) node.className = cls;
}

const canOperate = () => state.role === 'operator' || state.role === 'admin';
const num = (x) => (x === null || x === undefined ? '–' : Number(x).toLocaleString('en'));

function bytes(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function duration(s) {
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${t % 60} s`;
  return `${Math.floor(t / 3600)} h ${Math.floor((t % 3600) / 60)} min`;
}

function seconds(s) {
  if (s === null || s === undefined) return '–';
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`;
}

// ---------------------------------------------------------------------------------------------
// Login

async function start() {
  try {
    const r = await call('GET', '/v1/whoami');
    if (r.status === 200) {
      state.role = r.data.role;
      setText($('who'), `${r.data.name} (${r.data.role})`);
      $('logout').hidden = r.data.auth === false;
      showApp();
    } else if (r.status === 403) {
      showLogin(`This token may not view the dashboard: ${reason(r.data, r.status)}`);
    } else {
      showLogin(`The server answered ${r.status}: ${reason(r.data, r.status)}`);
    }
  } catch (e) {
    if (e instanceof Unauthorized) {
      const had = token();
      setToken(null);
      showLogin(had ? `The server refused the token: ${e.message}` : `This server needs a token: ${e.message}`);
    } else {
      showLogin(`Cannot reach the server: ${e.message}`);
    }
  }
}

function showLogin(why) {
  if (state.feed) state.feed.abort();
  state.feed = null;
  if (state.view) state.view.destroy?.();
  state.view = null;
  $('view').hidden = true;
  $('view').textContent = '';
  $('logout').hidden = true;
  setText($('who'), '');
  setText($('live'), '');
  $('login').hidden = false;
  setText($('login-reason'), why || '');
  $('token').value = '';
  $('token').focus();
}

/** Any 401 sends the user back to the login form with the reason. */
function unauthorized(message) {
  setToken(null);
  showLogin(`Signed out: ${message}`);
}

async function guarded(promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof Unauthorized) unauthorized(e.message);
    throw e;
  }
}

function showApp() {
  $('login').hidden = true;
  $('view').hidden = false;
  state.feed = subscribe(onSnapshot, (on) => {
    setText($('live'), on ? 'live' : 'reconnecting…');
    $('live').className = on ? 'live on' : 'live off';
  }, unauthorized);
  route();
}

// ---------------------------------------------------------------------------------------------
// The feed

/**
 * One event of the feed: every pipeline (`full`, the first after a connect), or the pipelines
 * that changed and the names of those gone. A pipeline left out stood still: its counters are
 * the same, so its rates come out as zero.
 */
function onSnapshot(s) {
  if (s.full || !state.snap) {
    const fresh = new Map(s.pipelines.map((p) => [p.name, p]));
    for (const name of state.snap ? state.snap.keys() : []) if (!fresh.has(name)) forget(name);
    state.snap = fresh;
    for (const name of fresh.keys()) state.dirty.add(name);
  } else {
    for (const name of s.gone || []) {
      state.snap.delete(name);
      forget(name);
    }
    for (const p of s.pipelines) {
      state.snap.set(p.name, p);
      state.dirty.add(p.name);
    }
  }
  for (const [name, p] of state.snap) {
    const prev = state.prev.get(name);
    const ops = prev && !state.dirty.has(name) ? prev.ops : new Map(p.ops.map((o) => [o.n, o]));
    if (prev && s.t > prev.t) {
      const dt = (s.t - prev.t) / 1000;
      const rate = (a, b) => Math.max(0, (a - b) / dt);
      const opRates = new Map();
      for (const o of p.ops) {
        const q = prev.ops.get(o.n);
        if (q) opRates.set(o.n, { i: rate(o.i, q.i), o: rate(o.o, q.o), busy: Math.max(0, (o.b - q.b) / dt) });
      }
      const r = { i: rate(p.in, prev.in), o: rate(p.out, prev.out), ops: opRates };
      const before = state.rates.get(name);
      if (!before || before.i !== r.i || before.o !== r.o) state.dirty.add(name);
      state.rates.set(name, r);
      const hist = state.history.get(name) || [];
      hist.push({ t: s.t, i: r.i, o: r.o });
      while (hist.length && hist[0].t < s.t - SPAN_MS) hist.shift();
      state.history.set(name, hist);
    }
    state.prev.set(name, { t: s.t, in: p.in, out: p.out, ops, cp: p.cp });
  }
  if (!state.frame) state.frame = requestAnimationFrame(render);
}

function forget(name) {
  state.prev.delete(name);
  state.rates.delete(name);
  state.history.delete(name);
  state.dirty.add(name);
}

/** Shows what the feed brought since the last frame. */
function render() {
  state.frame = 0;
  const dirty = state.dirty;
  state.dirty = new Set();
  state.view?.update(dirty);
  // For the load-time measurement (Performance API): when the first live data is on screen.
  if (!state.shown) {
    state.shown = true;
    performance.mark('weir:first-snapshot');
  }
}

// ---------------------------------------------------------------------------------------------
// Routing

function route() {
  if (!state.feed) return;
  state.view?.destroy?.();
  const root = $('view');
  root.textContent = '';
  const hash = location.hash || '#/';
  let current = 'nav-pipelines';
  if (hash.startsWith('#/p/')) {
    state.view = pipelineView(root, decodeURIComponent(hash.slice(4)));
  } else if (hash === '#/agents') {
    current = 'nav-agents';
    state.view = agentsView(root);
  } else {
    state.view = listView(root);
  }
  for (const id of ['nav-pipelines', 'nav-agents']) {
    if (id === current) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
  if (state.snap) state.view.update();
}

// ---------------------------------------------------------------------------------------------
// Pipelines

function listView(root) {
  document.title = 'Pipelines · Weir';
  const count = h('span', { class: 'muted' });
  const tbody = h('tbody', { id: 'pipelines' });
  const empty = h('p', { class: 'muted' }, 'No pipelines yet: submit one with ', h('code', {}, 'weir submit FILE'), '.');
  root.append(
    h('h1', {}, 'Pipelines', count),
    h('div', { class: 'card' },
      h('table', { 'aria-label': 'Pipelines' },
        h('thead', {}, h('tr', {},
          h('th', {}, 'Name'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'In/s'),
          h('th', { class: 'num' }, 'Out/s'), h('th', { class: 'num' }, 'Records in'),
          h('th', { class: 'num' }, 'Records out'), h('th', { class: 'num' }, 'Lag'),
          h('th', { class: 'num' }, 'Dead letters'))),
        tbody),
      empty));
  const rows = new Map();
  return {
    /** Updates the rows of `dirty` (every row without it). */
    update(dirty) {
      const snap = state.snap;
      for (const [name, row] of rows) {
        if (!snap.has(name)) {
          row.tr.remove();
          rows.delete(name);
        }
      }
      for (const [name, p] of snap) {
        let row = rows.get(name);
        if (row && dirty && !dirty.has(name)) continue;
        if (!row) {
          const cells = Array.from({ length: 6 }, () => h('td', { class: 'num' }));
          const status = h('span', { class: 'status' });
          const tr = h('tr', { 'data-pipeline': name },
            h('td', {}, h('a', { href: `#/p/${encodeURIComponent(name)}` }, name)),
            h('td', {}, status), ...cells);
          row = { tr, status, cells };
          rows.set(name, row);
          // Sorted by name: before the first row whose name comes after.
          const next = [...rows.keys()].filter((n) => n > name).sort()[0];
          tbody.insertBefore(tr, next === undefined ? null : rows.get(next).tr);
        }
        const r = state.rates.get(name);
        setStatus(row.status, p.status);
        const values = [r ? fmtRate(r.i) : '–', r ? fmtRate(r.o) : '–', num(p.in), num(p.out), num(p.lag), num(p.dead)];
        values.forEach((v, i) => setText(row.cells[i], v));
      }
      setText(count, `${snap.size}`);
      empty.hidden = snap.size > 0;
    },
  };
}

function pipelineView(root, name) {
  document.title = `${name} · Weir`;
  const status = h('span', { class: 'status', id: 'status' }, '…');
  const actions = h('div', { class: 'actions' });
  const msg = h('p', { id: 'message', role: 'status', 'aria-live': 'polite', class: 'muted' });
  const stopBtn = h('button', { type: 'button', id: 'stop', 'aria-label': `Stop pipeline ${name}`, disabled: true, onclick: () => act('stop') }, 'Stop');
  const resumeBtn = h('button', { type: 'button', id: 'resume', class: 'secondary', 'aria-label': `Resume pipeline ${name}`, disabled: true, onclick: () => act('resume') }, 'Resume');
  if (canOperate()) actions.append(stopBtn, resumeBtn);
  const kv = {};
  const kvBox = h('div', { class: 'kv' });
  for (const [k, label] of [['in', 'Records in'], ['out', 'Records out'], ['ri', 'In/s'], ['ro', 'Out/s'], ['lag', 'Consumer lag'], ['dead', 'Dead letters'], ['up', 'Running for']]) {
    kv[k] = h('span', { id: `kv-${k}` }, '–');
    kvBox.append(h('div', {}, h('span', {}, label), kv[k]));
  }
  const lastError = h('p', { class: 'error', id: 'last-error', hidden: true });
  const graphBox = h('div', { class: 'graph-wrap', id: 'graph' });
  const legend = h('div', { class: 'legend' },
    h('span', {}, h('span', { class: 'swatch', style: 'background:rgb(47,158,68)' }), 'input channel empty'),
    h('span', {}, h('span', { class: 'swatch', style: 'background:rgb(232,163,59)' }), 'half full'),
    h('span', {}, h('span', { class: 'swatch', style: 'background:rgb(214,69,61)' }), 'full (backpressure)'),
    h('span', {}, h('span', { class: 'swatch', style: 'background:#9aa5b1' }), 'unknown (fused or not running)'),
    h('span', {}, h('span', { class: 'swatch', style: 'background:#d6453d;height:2px' }), 'dashed: errors to dead letters'));
  const chartBox = h('div', { id: 'chart' });
  const opBody = h('tbody', { id: 'operators' });
  const cpKv = {};
  const cpBox = h('div', { class: 'kv' });
  for (const [k, label] of [['completed', 'Completed'], ['failed', 'Failed'], ['avg', 'Average duration'], ['size', 'Latest size'], ['resumed', 'Resumed from']]) {
    cpKv[k] = h('span', {}, '–');
    cpBox.append(h('div', {}, h('span', {}, label), cpKv[k]));
  }
  const cpBody = h('tbody', { id: 'checkpoints' });
  const cpNote = h('p', { class: 'muted', id: 'checkpoints-note' });
  const dlBody = h('tbody', { id: 'dead-letters' });
  const dlNote = h('p', { class: 'muted', id: 'dead-letters-note' });
  root.append(
    h('p', {}, h('a', { href: '#/' }, '← Pipelines')),
    h('h1', {}, h('span', { id: 'pipeline-name' }, name), status, actions),
    msg, lastError,
    h('div', { class: 'card' }, kvBox),
    h('div', { class: 'card' }, h('h2', {}, 'Graph'), graphBox, legend),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', {}, 'Throughput (records/s, last 5 minutes)'), chartBox,
        h('div', { class: 'legend' },
          h('span', {}, h('span', { class: 'swatch', style: 'background:#1d6fb8' }), 'in'),
          h('span', {}, h('span', { class: 'swatch', style: 'background:#2f9e44' }), 'out'))),
      h('div', { class: 'card' }, h('h2', {}, 'Operators'),
        h('table', { 'aria-label': 'Operators' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Operator'), h('th', {}, 'Kind'),
            h('th', { class: 'num' }, 'In/s'), h('th', { class: 'num' }, 'Out/s'),
            h('th', { class: 'num' }, 'Busy'), h('th', { class: 'num' }, 'Errors'),
            h('th', { class: 'num' }, 'Input fill'))),
          opBody))),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', {}, 'Checkpoints'), cpBox,
        h('table', { 'aria-label': 'Checkpoint history, newest first' },
          h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Id'), h('th', {}, 'Started'),
            h('th', {}, 'Outcome'), h('th', { class: 'num' }, 'Duration'),
            h('th', { class: 'num' }, 'Size'), h('th', { class: 'num' }, 'Written'))),
          cpBody),
        cpNote),
      h('div', { class: 'card' }, h('h2', {}, 'Dead letters (newest first)'),
        h('table', { 'aria-label': 'Dead letters' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Stage'), h('th', {}, 'Reason'),
            h('th', {}, 'Provenance'), h('th', {}, 'Content'))),
          dlBody),
        dlNote)));
  const chart = drawChart(chartBox, SPAN_MS);
  let detail = null;
  let updateGraph = null;
  let graphKey = '';
  let opRows = new Map();
  let seen = { status: null, completed: null, dead: null };
  let busy = false;
  let closed = false;
  let loadedAt = 0;
  let dlShown = null;

  async function refresh() {
    try {
      const r = await guarded(call('GET', `/v1/pipelines/${encodeURIComponent(name)}`));
      if (closed) return;
      if (r.status !== 200) {
        setText(msg, `${reason(r.data, r.status)}`);
        return;
      }
      detail = r.data;
      loadedAt = Date.now();
      const key = detail.graph.map((n) => `${n.name}/${n.kind}/${n.parallelism}`).join('|');
      if (key !== graphKey && detail.graph.length) {
        graphKey = key;
        updateGraph = drawGraph(graphBox, detail.graph, `Graph of ${name}: ${detail.graph.map((n) => n.name).join(', ')}`);
        opBody.textContent = '';
        opRows = new Map();
        for (const n of detail.graph) {
          const cells = Array.from({ length: 5 }, () => h('td', { class: 'num' }, '–'));
          opBody.append(h('tr', { 'data-op': n.name }, h('td', {}, n.name), h('td', {}, `${n.kind} ×${n.parallelism}`), ...cells));
          opRows.set(n.name, { cells, n });
        }
      }
      lastError.hidden = !detail.last_error;
      setText(lastError, detail.last_error ? `Last error: ${detail.last_error}` : '');
      const cps = detail.checkpoints || {};
      setText(cpKv.resumed, cps.resumed_from ?? '–');
      update();
    } catch (e) {
      if (!(e instanceof Unauthorized)) setText(msg, `Cannot load the pipeline: ${e.message}`);
    }
  }

  // The checkpoint history from the checkpoint directory, newest first; read again when the
  // feed counts a new checkpoint (at most every 2 s).
  let cpLoading = false;
  let cpLoadedAt = 0;
  let cpPending = null;
  async function loadCheckpoints() {
    const wait = cpLoadedAt + 2000 - Date.now();
    if (cpLoading || wait > 0) {
      // Once more after the pause, so the newest checkpoint is never left out.
      if (!cpPending) cpPending = setTimeout(() => { cpPending = null; if (!closed) loadCheckpoints(); }, Math.max(wait, 200));
      return;
    }
    cpLoading = true;
    try {
      const r = await guarded(call('GET', `/v1/pipelines/${encodeURIComponent(name)}/checkpoints?limit=10`));
      if (closed) return;
      if (r.status !== 200) {
        setText(cpNote, reason(r.data, r.status));
        return;
      }
      cpBody.textContent = '';
      for (const c of r.data.checkpoints || []) {
        const when = c.started_at_ms !== undefined ? new Date(c.started_at_ms).toLocaleTimeString() : '–';
        const outcome = c.reason ? `${c.outcome}: ${c.reason}` : `${c.outcome}${c.resumed_from ? ' (resumed from)' : ''}${c.incremental ? ', incremental' : ''}`;
        cpBody.append(h('tr', { 'data-checkpoint': c.id, 'data-outcome': c.outcome },
          h('td', { class: 'num' }, String(c.id)), h('td', {}, when), h('td', {}, outcome),
          h('td', { class: 'num' }, c.duration_ms !== undefined ? seconds(c.duration_ms / 1000) : '–'),
          h('td', { class: 'num' }, bytes(c.total_bytes)), h('td', { class: 'num' }, bytes(c.bytes_written))));
      }
      const total = r.data.total ?? 0;
      setText(cpNote, total ? `${total} retained (keep: ${r.data.keep}) in ${r.data.dir}` : 'No checkpoint on disk yet.');
    } catch (e) {
      if (!(e instanceof Unauthorized)) setText(cpNote, `Cannot load checkpoints: ${e.message}`);
    } finally {
      cpLoading = false;
      cpLoadedAt = Date.now();
    }
  }

  async function loadDeadLetters() {
    try {
      const r = await guarded(call('GET', `/v1/pipelines/${encodeURIComponent(name)}/dead-letters?limit=50`));
      if (closed) return;
      dlBody.textContent = '';
      if (r.status !== 200) {
        setText(dlNote, reason(r.data, r.status));
        return;
      }
      const list = r.data.dead_letters || [];
      dlShown = r.data.total ?? list.length;
      for (const d of list) {
        const prov = d.position !== undefined ? `record ${d.position}`
          : d.source !== undefined ? `${d.source}${d.line !== undefined ? `:${d.line}` : ''}` : '–';
        const content = d.raw !== undefined ? d.raw : JSON.stringify(d.record ?? d);
        dlBody.append(h('tr', {}, h('td', {}, d.stage ?? '–'), h('td', {}, d.error ?? '–'),
          h('td', {}, prov), h('td', { class: 'mono' }, content.length > 300 ? `${content.slice(0, 299)}…` : content)));
      }
      setText(dlNote, r.data.destination === null ? 'This pipeline has no dead-letter output.'
        : `${num(r.data.total ?? list.length)} in ${r.data.destination}`);
    } catch (e) {
      if (!(e instanceof Unauthorized)) setText(dlNote, `Cannot load dead letters: ${e.message}`);
    }
  }

  async function act(what) {
    if (busy) return;
    busy = true;
    stopBtn.disabled = true;
    resumeBtn.disabled = true;
    setText(msg, what === 'stop' ? 'Stopping (with a checkpoint)…' : 'Resuming…');
    try {
      const r = await guarded(call('POST', `/v1/pipelines/${encodeURIComponent(name)}/${what}`));
      setText(msg, r.status === 200 ? (what === 'stop' ? 'Stopped.' : 'Resumed.') : `${what} failed: ${reason(r.data, r.status)}`);
    } catch (e) {
      if (!(e instanceof Unauthorized)) setText(msg, `${what} failed: ${e.message}`);
    }
    busy = false;
    await refresh();
  }

  function update() {
    const p = state.snap?.get(name);
    if (!p) {
      if (state.snap && !detail) setText(msg, `No pipeline named ${name}.`);
      return;
    }
    const statusNow = p.status;
    setStatus(status, statusNow);
    if (!busy) {
      stopBtn.disabled = statusNow !== 'running';
      resumeBtn.disabled = statusNow === 'running';
    }
    const r = state.rates.get(name);
    setText(kv.in, num(p.in));
    setText(kv.out, num(p.out));
    setText(kv.ri, r ? fmtRate(r.i) : '–');
    setText(kv.ro, r ? fmtRate(r.o) : '–');
    setText(kv.lag, num(p.lag));
    setText(kv.dead, num(p.dead));
    setText(kv.up, detail && statusNow === 'running' ? duration(detail.seconds_since_start + (Date.now() - loadedAt) / 1000) : '–');
    const ops = new Map(p.ops.map((o) => [o.n, o]));
    const opRates = r ? r.ops : new Map();
    if (updateGraph) updateGraph(ops, opRates);
    for (const [opName, row] of opRows) {
      const o = ops.get(opName);
      const q = opRates.get(opName);
      const par = row.n.parallelism || 1;
      setText(row.cells[0], q ? fmtRate(q.i) : '–');
      setText(row.cells[1], q ? fmtRate(q.o) : '–');
      setText(row.cells[2], q ? `${Math.round((q.busy / par) * 100)}%` : '–');
      setText(row.cells[3], o ? num(o.e) : '–');
      setText(row.cells[4], o && o.f !== null ? `${Math.round(o.f * 100)}%` : '–');
    }
    chart(state.history.get(name) || []);
    if (p.cp) {
      setText(cpKv.completed, num(p.cp.completed));
      setText(cpKv.failed, num(p.cp.failed));
      setText(cpKv.avg, p.cp.completed ? seconds(p.cp.duration_sum / p.cp.completed) : '–');
      setText(cpKv.size, bytes(p.cp.last_size));
    }
    // Fetch details only when something they show has changed.
    // A file dead-letter output shows its records once a checkpoint commits them, so a count
    // the list does not show yet is looked at again after the next checkpoint.
    const completed = p.cp ? p.cp.completed : null;
    const cpChanged = completed !== seen.completed;
    if (seen.status !== null && (statusNow !== seen.status || (cpChanged && Date.now() - loadedAt > 5000))) refresh();
    if (cpChanged || statusNow !== seen.status) loadCheckpoints();
    if (p.dead !== seen.dead || statusNow !== seen.status || (cpChanged && dlShown !== null && dlShown < p.dead)) loadDeadLetters();
    seen = { status: statusNow, completed, dead: p.dead };
  }

  refresh();
  loadCheckpoints();
  return { update, destroy() { closed = true; if (cpPending) clearTimeout(cpPending); } };
}

// ---------------------------------------------------------------------------------------------
// Agents and tasks

function agentsView(root) {
  document.title = 'Agents and tasks · Weir';
  const agentsBox = h('div', { id: 'agents' }, h('p', { class: 'muted' }, 'Loading…'));
  const tasksBox = h('div', { id: 'tasks' });
  const taskId = h('input', { id: 'task-id', name: 'task-id', required: true, autocomplete: 'off' });
  const taskOut = h('div', { id: 'task' });
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); showTask(taskId.value.trim()); } },
    h('label', { for: 'task-id' }, 'Task id'), taskId,
    h('button', { type: 'submit', 'aria-label': 'Show the task' }, 'Show'));
  const refreshBtn = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Refresh agents and tasks', onclick: () => load() }, 'Refresh');
  root.append(h('h1', {}, 'Agents and tasks', h('div', { class: 'actions' }, refreshBtn)),
    h('div', { class: 'card' }, h('h2', {}, 'Agents'), agentsBox),
    h('div', { class: 'card' }, h('h2', {}, 'Tasks'), tasksBox, form, taskOut));
  let closed = false;
  let tasks = [];
  const statuses = ['', 'queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled'];
  const statusFilter = h('select', { id: 'task-status' }, ...statuses.map((s) => h('option', { value: s }, s || 'any')));
  const actionFilter = h('input', { id: 'task-action', autocomplete: 'off' });
  const taskFilters = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); loadTasks().catch(() => {}); } },
    h('label', { for: 'task-status' }, 'Status'), statusFilter,
    h('label', { for: 'task-action' }, 'Action'), actionFilter,
    h('button', { type: 'submit', 'aria-label': 'Filter the tasks' }, 'Filter'));
  statusFilter.addEventListener('change', () => loadTasks().catch(() => {}));

  function unavailable(box, what, r) {
    box.textContent = '';
    box.append(h('p', { class: 'notice', id: `${box.id}-unavailable` },
      `${what}: not available. This server answers ${r.status} (${reason(r.data, r.status)}).`));
  }

  async function load() {
    try {
      const a = await guarded(call('GET', '/v1/agents'));
      if (closed) return;
      if (a.status !== 200) unavailable(agentsBox, 'Agents and tasks', a);
      else renderAgents(Array.isArray(a.data) ? a.data : a.data.agents || []);
      await loadTasks();
    } catch (e) {
      if (!(e instanceof Unauthorized)) setText(agentsBox, `Cannot load agents: ${e.message}`);
    }
  }

  // The filters go to the route (GET /v1/tasks?status=&action=): the server filters.
  async function loadTasks() {
    const query = new URLSearchParams();
    if (statusFilter.value) query.set('status', statusFilter.value);
    if (actionFilter.value.trim()) query.set('action', actionFilter.value.trim());
    query.set('limit', '200');
    const t = await guarded(call('GET', `/v1/tasks?${query}`));
    if (closed) return;
    if (t.status !== 200) unavailable(tasksBox, 'The task list', t);
    else {
      tasks = Array.isArray(t.data) ? t.data : t.data.tasks || [];
      renderTasks();
    }
  }

  function renderAgents(list) {
    agentsBox.textContent = '';
    if (!list.length) {
      agentsBox.append(h('p', { class: 'muted' }, 'No agents.'));
      return;
    }
    const body = h('tbody');
    for (const a of list) {
      const caps = Array.isArray(a.capabilities) ? a.capabilities.join(', ') : JSON.stringify(a.capabilities ?? '–');
      const health = typeof a.health === 'object' && a.health !== null ? (a.health.status ?? JSON.stringify(a.health)) : (a.health ?? '–');
      const load = a.tasks_in_flight ?? a.in_flight ?? a.load ?? '–';
      body.append(h('tr', { 'data-agent': a.name ?? a.id }, h('td', {}, a.name ?? a.id ?? '–'), h('td', {}, caps),
        h('td', {}, String(health)), h('td', { class: 'num' }, String(load))));
    }
    agentsBox.append(h('table', { 'aria-label': 'Agents' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Agent'), h('th', {}, 'Capabilities'), h('th', {}, 'Health'), h('th', { class: 'num' }, 'Tasks in flight'))),
      body));
  }

  function renderTasks() {
    tasksBox.textContent = '';
    const body = h('tbody');
    for (const t of tasks) {
      body.append(h('tr', { 'data-task': t.task_id }, h('td', {}, h('a', { href: '#/agents', onclick: (e) => { e.preventDefault(); showTask(t.task_id); } }, t.task_id)),
        h('td', {}, t.action ?? '–'), h('td', {}, t.status ?? '–'), h('td', {}, t.agent ?? '–'), h('td', { class: 'num' }, String(t.attempts ?? '–'))));
    }
    if (!taskFilters.isConnected) tasksBox.before(taskFilters);
    tasksBox.append(tasks.length ? h('table', { 'aria-label': 'Tasks' }, h('thead', {}, h('tr', {}, h('th', {}, 'Task'), h('th', {}, 'Action'), h('th', {}, 'Status'), h('th', {}, 'Agent'), h('th', { class: 'num' }, 'Attempts'))), body)
      : h('p', { class: 'muted', id: 'tasks-empty' }, 'No tasks match.'));
  }

  async function showTask(id) {
    if (!id) return;
    try {
      const r = await guarded(call('GET', `/v1/tasks/${encodeURIComponent(id)}`));
      taskOut.textContent = '';
      if (r.status !== 200) {
        taskOut.append(h('p', { class: 'notice' }, `Task ${id}: ${reason(r.data, r.status)} (HTTP ${r.status})`));
        return;
      }
      const t = r.data;
      const attempts = Array.isArray(t.attempts) ? t.attempts : [];
      taskOut.append(h('div', { class: 'kv' },
        ...[['Status', t.status], ['Agent', t.agent], ['Execution time', t.execution_time], ['Attempts', Array.isArray(t.attempts) ? t.attempts.length : t.attempts], ['Error', t.error]]
          .map(([k, v]) => h('div', {}, h('span', {}, k), h('span', {}, v === null || v === undefined ? '–' : String(v))))),
      h('p', { class: 'mono' }, `Result: ${JSON.stringify(t.result ?? null)}`));
      if (attempts.length) {
        taskOut.append(h('table', { 'aria-label': 'Attempts' },
          h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Attempt'))),
          h('tbody', {}, ...attempts.map((a, i) => h('tr', {}, h('td', {}, String(i + 1)), h('td', { class: 'mono' }, JSON.stringify(a)))))));
      }
    } catch (e) {
      if (!(e instanceof Unauthorized)) taskOut.textContent = `Cannot load the task: ${e.message}`;
    }
  }

  load();
  return { update() {}, destroy() { closed = true; } };
}

// ---------------------------------------------------------------------------------------------

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken($('token').value.trim());
  start();
});
$('logout').addEventListener('click', () => {
  setToken(null);
  showLogin('Signed out.');
});
window.addEventListener('hashchange', route);
start();
