// Inline SVG: a pipeline's graph (left to right, edges coloured by backpressure) and the
// throughput chart. Built once, then only attributes and texts change.

const NS = 'http://www.w3.org/2000/svg';
const W = 160, H = 46, GAP_X = 40, GAP_Y = 18, PAD = 8;
const DEAD = 'dead_letter';
const MERGE = 'dead_letters';
const SIDE = 'source_errors';

function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function short(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** The colour of a channel fill ratio (0 green … 1 red); grey when unknown. */
export function fillColour(f) {
  if (f === null || f === undefined) return '#9aa5b1';
  const x = Math.max(0, Math.min(1, f));
  // green (47,158,68) → amber (232,163,59) → red (214,69,61)
  const lerp = (a, b, t) => Math.round(a + (b - a) * t);
  const [a, b, t] = x < 0.5
    ? [[47, 158, 68], [232, 163, 59], x * 2]
    : [[232, 163, 59], [214, 69, 61], (x - 0.5) * 2];
  return `rgb(${lerp(a[0], b[0], t)},${lerp(a[1], b[1], t)},${lerp(a[2], b[2], t)})`;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Draws `graph` ([{name, kind, parallelism}] in plan order: the source, the steps, then the
 * sinks) into `container`. Returns update(ops, rates): ops maps operator name to the live
 * `{f, e}` of the feed, rates maps it to `{i, o}` per second.
 */
export function drawGraph(container, graph, title) {
  container.textContent = '';
  // The main line: the source and the steps in plan order, then the sinks in one column. The
  // dead-letter path goes right of the sinks: `source_errors` (input that could not be
  // decoded) beside them, then the `dead_letters` merger and the `dead_letter` sink. Dashed
  // edges lead there from every operator that has routed errors.
  const chain = graph.filter((n) => n.kind !== 'sink' && n.name !== MERGE && n.name !== SIDE);
  const sinks = graph.filter((n) => n.kind === 'sink' && n.name !== DEAD);
  const side = graph.filter((n) => n.kind !== 'sink' && n.name === SIDE);
  const merge = graph.filter((n) => n.kind !== 'sink' && n.name === MERGE);
  const dead = graph.filter((n) => n.kind === 'sink' && n.name === DEAD);
  const columns = chain.map((n) => [n]);
  columns.push([...sinks, ...side, ...(merge.length ? [] : dead)]);
  if (merge.length) columns.push(merge, dead);
  const used = columns.filter((c) => c.length);
  // With `source_errors` beside the sinks, the merger and its sink go one row lower, so that
  // the error edges do not pass behind it.
  const rows = Math.max(1, ...used.map((c) => c.length)) + (side.length && merge.length ? 1 : 0);
  const height = rows * H + (rows - 1) * GAP_Y + 2 * PAD;
  const width = Math.max(1, used.length) * (W + GAP_X) - GAP_X + 2 * PAD;
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': title, class: 'graph',
  });
  const pos = new Map();
  used.forEach((col, i) => {
    const top = col.length === 1 && col[0].kind !== 'sink' && i < chain.length
      ? (height - H) / 2 : PAD;
    col.forEach((n, j) => pos.set(n.name, { x: PAD + i * (W + GAP_X), y: top + j * (H + GAP_Y) }));
  });
  if (merge.length) {
    const y = side.length ? pos.get(SIDE).y + H + GAP_Y
      : pos.get(sinks.length ? sinks[sinks.length - 1].name : MERGE).y;
    pos.get(MERGE).y = y;
    if (dead.length) pos.get(DEAD).y = y;
  }
  const edges = [];
  const edgeLayer = el('g', {}, svg);
  // when(ops): whether a dashed edge is shown (errors went that way); solid edges always are.
  const addEdge = (from, to, when) => {
    const a = pos.get(from.name), b = pos.get(to.name);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const mx = (x1 + x2) / 2;
    const dashed = !!when;
    const path = el('path', {
      d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
      class: dashed ? 'edge dashed' : 'edge', stroke: dashed ? '#d6453d' : fillColour(null),
      'data-from': from.name, 'data-to': to.name,
    }, edgeLayer);
    if (dashed) path.style.display = 'none';
    const t = el('title', {}, path);
    t.textContent = `${from.name} → ${to.name}`;
    edges.push({ from, to, when, path, t });
  };
  for (let i = 0; i + 1 < chain.length; i++) addEdge(chain[i], chain[i + 1], null);
  const last = chain[chain.length - 1];
  if (last) for (const s of sinks) addEdge(last, s, null);
  const deadEntry = merge[0] || dead[0];
  if (deadEntry) for (const n of chain) addEdge(n, deadEntry, (ops) => (ops.get(n.name)?.e ?? 0) > 0);
  if (side.length && chain.length) {
    addEdge(chain[0], side[0], (ops) => (ops.get(SIDE)?.i ?? 0) > 0);
    if (deadEntry) addEdge(side[0], deadEntry, (ops) => (ops.get(SIDE)?.o ?? 0) > 0);
  }
  if (merge.length && dead.length) addEdge(merge[0], dead[0], null);
  const subs = new Map();
  for (const n of graph) {
    const p = pos.get(n.name);
    const cls = [DEAD, MERGE, SIDE].includes(n.name) ? 'node dead' : `node ${n.kind}`;
    const g = el('g', { class: cls, transform: `translate(${p.x},${p.y})`, 'data-op': n.name }, svg);
    el('rect', { width: W, height: H, rx: 6 }, g);
    const name = el('text', { x: 10, y: 18 }, g);
    name.textContent = short(n.name, 21);
    const full = el('title', {}, g);
    full.textContent = `${n.name} (${n.kind}, parallelism ${n.parallelism})`;
    const sub = el('text', { x: 10, y: 36, class: 'sub' }, g);
    sub.textContent = `${n.kind} ×${n.parallelism}`;
    subs.set(n.name, { sub, n });
  }
  container.appendChild(svg);
  return (ops, rates) => {
    for (const e of edges) {
      if (e.when) {
        const show = e.when(ops) ? '' : 'none';
        if (e.path.style.display !== show) e.path.style.display = show;
        setText(e.t, `${e.from.name} → ${e.to.name}: errors (${ops.get(e.from.name)?.e ?? 0} routed by ${e.from.name})`);
        continue;
      }
      const live = ops.get(e.to.name);
      const f = live ? live.f : null;
      const colour = fillColour(f);
      if (e.path.getAttribute('stroke') !== colour) e.path.setAttribute('stroke', colour);
      setText(e.t, `${e.from.name} → ${e.to.name}: ${f === null || f === undefined
        ? 'input channel fill unknown (fused or not running)'
        : `input channel ${Math.round(f * 100)}% full`}`);
    }
    for (const [name, { sub, n }] of subs) {
      const r = rates.get(name);
      setText(sub, r ? `${fmtRate(r.i)}/s in · ${fmtRate(r.o)}/s out` : `${n.kind} ×${n.parallelism}`);
    }
  };
}

export function fmtRate(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  if (x >= 100) return String(Math.round(x));
  return x.toFixed(1);
}

/**
 * The throughput chart: returns update(history) with history [{t, i, o}] (ms, records/s in and
 * out), the last `spanMs` shown.
 */
export function drawChart(container, spanMs) {
  const w = 640, h = 170, left = 48, bottom = 22, top = 8;
  container.textContent = '';
  const svg = el('svg', {
    viewBox: `0 0 ${w} ${h}`, width: '100%', height: h, role: 'img',
    'aria-label': 'Throughput, records per second in and out',
  });
  el('line', { x1: left, y1: h - bottom, x2: w, y2: h - bottom, class: 'axis' }, svg);
  el('line', { x1: left, y1: top, x2: left, y2: h - bottom, class: 'axis' }, svg);
  const maxLabel = el('text', { x: left - 4, y: top + 10, 'text-anchor': 'end' }, svg);
  const zero = el('text', { x: left - 4, y: h - bottom, 'text-anchor': 'end' }, svg);
  zero.textContent = '0';
  const ago = el('text', { x: left, y: h - 4 }, svg);
  ago.textContent = `${Math.round(spanMs / 60000)} min ago`;
  const now = el('text', { x: w, y: h - 4, 'text-anchor': 'end' }, svg);
  now.textContent = 'now';
  const lineIn = el('polyline', { class: 'in', points: '' }, svg);
  const lineOut = el('polyline', { class: 'out', points: '' }, svg);
  container.appendChild(svg);
  return (history) => {
    if (!history.length) return;
    const tEnd = history[history.length - 1].t;
    const tStart = tEnd - spanMs;
    let max = 1;
    for (const p of history) max = Math.max(max, p.i, p.o);
    const x = (t) => left + ((t - tStart) / spanMs) * (w - left);
    const y = (v) => h - bottom - (v / max) * (h - bottom - top);
    const pts = (k) => history.filter((p) => p.t >= tStart)
      .map((p) => `${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`).join(' ');
    lineIn.setAttribute('points', pts('i'));
    lineOut.setAttribute('points', pts('o'));
    setText(maxLabel, `${fmtRate(max)}/s`);
  };
}
