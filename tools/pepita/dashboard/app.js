// The pepita dashboard page: one run model (tasks, attempts, lanes, series) kept from a snapshot
// plus Server-Sent Events deltas (live), or from the snapshot inlined in the report; rendered as
// a paged table, an SVG timeline (one bar per attempt, aggregated per pixel column past
// BAR_LIMIT attempts), SVG charts, failures with their stderr tail, and the workers' load.
'use strict';
(function () {
  const PAGE = 100, BAR_LIMIT = 4000, LANE_H = 14, LEFT = 90, WIDTH = 1100, MAX_LANES = 96;
  const FINAL_OK = new Set(['succeeded']);
  const NOT_FAILED = new Set(['succeeded', 'pending', 'running', 'retrying', 'skipped', 'cancelled']);
  const S = { job: '', now: 0, finished: false, crashed: false, lanes: [], tasks: [], attempts: [],
              failures: {}, series: [], workers: [], queued: 0, page: 0, filter: '', search: '',
              renderMs: 0, renders: 0 };
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs, text) => {
    const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  // task row: [id,name,backend,state,attempts,wall_s,cpu_s,rss_kb,exit,signal,host,error,origin]
  const T = { id: 0, name: 1, backend: 2, state: 3, attempts: 4, wall: 5, cpu: 6, rss: 7, exit: 8, signal: 9, host: 10, error: 11, origin: 12 };
  // attempt: [task,number,lane,start_ms,end_ms,state]
  const secs = (s) => s < 10 ? s.toFixed(2) + 's' : s < 600 ? s.toFixed(1) + 's' : (s / 60).toFixed(1) + 'm';
  const kb = (k) => k <= 0 ? '' : k < 1024 ? k + 'K' : k < 1048576 ? (k / 1024).toFixed(1) + 'M' : (k / 1048576).toFixed(2) + 'G';

  function applySnapshot(d) {
    S.job = d.job; S.tasks = d.tasks; S.attempts = d.attempts; S.failures = d.failures || {};
    common(d);
  }
  function applyDelta(d) {
    for (const k in d.tasks) S.tasks[+k] = d.tasks[k];
    for (const k in d.attempts) S.attempts[+k] = d.attempts[k];
    for (const k in d.failures) S.failures[k] = d.failures[k];
    common(d);
  }
  function common(d) {
    S.now = d.now_ms; S.finished = d.finished; S.crashed = d.crashed; S.lanes = d.lanes;
    S.series = d.series; S.workers = d.workers || []; S.queued = d.queued || 0;
    schedule();
  }
  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    // A timer, not requestAnimationFrame: a hidden or headless page still renders each batch.
    setTimeout(() => { pending = false; render(); }, 20);
  }

  function render() {
    const t0 = performance.now();
    renderHeader(); renderTable(); renderTimeline(); renderCharts(); renderFailures(); renderWorkers();
    const ms = performance.now() - t0;
    S.renderMs = Math.max(S.renderMs, ms); S.renders++;
    document.body.dataset.renderMs = S.renderMs.toFixed(1);
    document.body.dataset.renders = String(S.renders);
    document.body.dataset.tasks = String(S.tasks.length);
    document.body.dataset.ready = '1';
  }

  function renderHeader() {
    $('job').textContent = S.job;
    document.title = 'pepita: ' + S.job;
    const st = $('run-state');
    const live = !window.PEPITA_REPORT;
    st.textContent = S.crashed ? 'ended without finishing' : S.finished ? 'finished' : live ? 'running' : 'in progress';
    st.className = 'pill ' + (S.crashed ? 'crashed' : S.finished ? 'finished' : 'live');
    document.body.dataset.finished = S.finished ? '1' : '0';
    const counts = {};
    for (const t of S.tasks) counts[t[T.state]] = (counts[t[T.state]] || 0) + 1;
    $('counts').textContent = Object.keys(counts).sort().map((k) => counts[k] + ' ' + k).join(' · ');
    $('elapsed').textContent = secs(S.now / 1000);
    const sel = $('state-filter');
    for (const k of Object.keys(counts)) {
      if (![...sel.options].some((o) => o.value === k)) sel.appendChild(el('option', { value: k }, k));
    }
  }

  function visibleTasks() {
    const q = S.search.toLowerCase();
    const out = [];
    for (let i = 0; i < S.tasks.length; i++) {
      const t = S.tasks[i];
      if (S.filter && t[T.state] !== S.filter) continue;
      if (q && !t[T.name].toLowerCase().includes(q)) continue;
      out.push(i);
    }
    return out;
  }

  function renderTable() {
    const rows = visibleTasks();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    S.page = Math.min(S.page, pages - 1);
    $('page-info').textContent = `${rows.length} tasks · page ${S.page + 1} of ${pages}`;
    const body = document.querySelector('#tasks tbody');
    const frag = document.createDocumentFragment();
    const control = document.body.dataset.control === '1';
    for (const i of rows.slice(S.page * PAGE, S.page * PAGE + PAGE)) {
      const t = S.tasks[i];
      const tr = el('tr', { 'data-task': t[T.name], 'data-state': t[T.state], 'data-index': i });
      tr.appendChild(el('td', null, t[T.name]));
      tr.appendChild(el('td', { class: 'state s-' + t[T.state] }, t[T.state] + (t[T.origin] === 1 ? ' (journal)' : t[T.origin] === 2 ? ' (cache)' : '')));
      tr.appendChild(el('td', null, t[T.backend]));
      tr.appendChild(el('td', null, t[T.host]));
      tr.appendChild(el('td', { class: 'num' }, String(t[T.attempts])));
      tr.appendChild(el('td', { class: 'num' }, t[T.attempts] ? secs(t[T.wall]) : ''));
      tr.appendChild(el('td', { class: 'num' }, t[T.cpu] ? secs(t[T.cpu]) : ''));
      tr.appendChild(el('td', { class: 'num' }, kb(t[T.rss])));
      tr.appendChild(el('td', { class: 'num' }, t[T.signal] ? 'sig ' + t[T.signal] : t[T.exit] >= 0 ? String(t[T.exit]) : ''));
      const cell = el('td');
      if (control && ['pending', 'running', 'retrying'].includes(t[T.state])) {
        const b = el('button', { type: 'button', class: 'cancel' }, 'cancel');
        b.onclick = () => cancel(t[T.id]);
        cell.appendChild(b);
      }
      tr.appendChild(cell);
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }

  function color(state) {
    return getComputedStyle(document.documentElement).getPropertyValue(
      state === 'succeeded' ? '--ok' : state === 'running' ? '--run' : NOT_FAILED.has(state) ? '--skip' : '--bad');
  }

  function renderTimeline() {
    const svg = $('timeline');
    const lanes = Math.min(S.lanes.length, MAX_LANES);
    const span = Math.max(S.now, 1);
    const plot = WIDTH - LEFT;
    const h = Math.max(1, lanes) * LANE_H + 16;
    svg.setAttribute('viewBox', `0 0 ${WIDTH} ${h}`);
    svg.setAttribute('height', h);
    const frag = document.createDocumentFragment();
    for (let l = 0; l < lanes; l++)
      frag.appendChild(el('svg:text', { x: 2, y: l * LANE_H + 11 }, S.lanes[l]));
    for (let k = 0; k <= 4; k++)
      frag.appendChild(el('svg:text', { x: LEFT + plot * k / 4 - (k === 4 ? 30 : 0), y: h - 3 }, secs(span * k / 4000)));
    const aggregated = S.attempts.length > BAR_LIMIT;
    svg.dataset.aggregated = aggregated ? '1' : '0';
    if (!aggregated) {
      for (const a of S.attempts) {
        if (!a || a[2] >= lanes) continue;
        const end = a[4] < 0 ? S.now : a[4];
        const t = S.tasks[a[0]];
        const x = LEFT + plot * a[3] / span, w = Math.max(1.5, plot * (end - a[3]) / span);
        const r = el('svg:rect', { class: 'bar s-' + a[5], x: x.toFixed(1), y: a[2] * LANE_H + 1, width: w.toFixed(1),
                                   height: LANE_H - 3, 'data-task': t ? t[T.name] : '', 'data-attempt': a[1], 'data-state': a[5] });
        r.appendChild(el('svg:title', null, `${t ? t[T.name] : '?'} · attempt ${a[1]} · ${a[5]} · ${secs((end - a[3]) / 1000)}`));
        frag.appendChild(r);
      }
      $('timeline-note').textContent = `${S.attempts.length} attempts on ${S.lanes.length} slots`;
    } else {
      // Per lane and pixel column: how busy it was, and whether an attempt there failed.
      const COLS = 500, busy = new Float32Array(lanes * COLS), bad = new Uint8Array(lanes * COLS);
      const colMs = span / COLS;
      for (const a of S.attempts) {
        if (!a || a[2] >= lanes) continue;
        const end = a[4] < 0 ? S.now : a[4];
        const c0 = Math.min(COLS - 1, Math.floor(a[3] / colMs)), c1 = Math.min(COLS - 1, Math.floor(end / colMs));
        const failed = !NOT_FAILED.has(a[5]);
        for (let c = c0; c <= c1; c++) {
          const from = Math.max(a[3], c * colMs), to = Math.min(end, (c + 1) * colMs);
          busy[a[2] * COLS + c] += Math.max(0, to - from) / colMs;
          if (failed) bad[a[2] * COLS + c] = 1;
        }
      }
      const cw = plot / COLS;
      for (let l = 0; l < lanes; l++) {
        for (let c = 0; c < COLS; c++) {
          const b = busy[l * COLS + c];
          if (b <= 0 && !bad[l * COLS + c]) continue;
          frag.appendChild(el('svg:rect', { class: 'agg ' + (bad[l * COLS + c] ? 's-failed' : 's-succeeded'),
            x: (LEFT + c * cw).toFixed(1), y: l * LANE_H + 1, width: cw.toFixed(2), height: LANE_H - 3,
            'fill-opacity': Math.min(1, 0.25 + b).toFixed(2) }));
        }
      }
      $('timeline-note').textContent = `${S.attempts.length} attempts on ${S.lanes.length} slots, aggregated per column (red: a failure)`;
    }
    svg.replaceChildren(frag);
  }

  function line(svgId, values) {
    const svg = $(svgId);
    const max = Math.max(1, ...values);
    const n = Math.max(1, values.length - 1);
    const pts = values.map((v, i) => `${(400 * i / n).toFixed(1)},${(98 - 94 * v / max).toFixed(1)}`).join(' ');
    svg.replaceChildren(el('svg:polyline', { class: 'chart-line', points: pts }),
                        el('svg:text', { x: 2, y: 10, 'font-size': 9 }, 'max ' + max));
  }
  function renderCharts() {
    line('throughput', S.series.map((p) => p[1]));
    line('running', S.series.map((p) => p[2]));
  }

  function renderFailures() {
    const box = $('failures');
    const failed = [];
    for (let i = 0; i < S.tasks.length; i++) if (!NOT_FAILED.has(S.tasks[i][T.state])) failed.push(i);
    $('failure-count').textContent = failed.length ? `(${failed.length})` : '(none)';
    const frag = document.createDocumentFragment();
    for (const i of failed.slice(0, 50)) {
      const t = S.tasks[i];
      const d = el('div', { class: 'failure', 'data-task': t[T.name], 'data-state': t[T.state] });
      d.appendChild(el('h3', null, `${t[T.name]} — ${t[T.state]}` + (t[T.signal] ? ` (signal ${t[T.signal]})` : t[T.exit] >= 0 ? ` (exit ${t[T.exit]})` : '')));
      if (t[T.error]) d.appendChild(el('div', { class: 'error' }, t[T.error]));
      d.appendChild(el('pre', { class: 'stderr' }, S.failures[String(i)] || '(no stderr)'));
      frag.appendChild(d);
    }
    if (failed.length > 50) frag.appendChild(el('p', null, `… and ${failed.length - 50} more (filter the table by state)`));
    box.replaceChildren(frag);
  }

  function renderWorkers() {
    const body = document.querySelector('#workers tbody');
    const frag = document.createDocumentFragment();
    for (const w of S.workers) {
      const tr = el('tr', { 'data-backend': w.backend });
      tr.appendChild(el('td', null, w.backend));
      tr.appendChild(el('td', null, `${w.running} / ${w.slots}`));
      tr.appendChild(el('td', null, String(w.ready)));
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }

  function token() {
    const q = new URLSearchParams(location.search).get('token');
    if (q) return q;
    const m = document.cookie.match(/(?:^|;\s*)pepita_token=([^;]*)/);
    return m ? m[1] : '';
  }
  function cancel(id) {
    fetch('api/tasks/' + id + '/cancel', { method: 'POST', headers: { 'X-Pepita-Token': token() } })
      .then((r) => r.text()).then((t) => console.log('cancel', id, t));
  }

  $('search').addEventListener('input', (e) => { S.search = e.target.value; S.page = 0; renderTable(); });
  $('state-filter').addEventListener('change', (e) => { S.filter = e.target.value; S.page = 0; renderTable(); });
  $('prev').addEventListener('click', () => { S.page = Math.max(0, S.page - 1); renderTable(); });
  $('next').addEventListener('click', () => { S.page++; renderTable(); });
  // The browser test's probe (report#measure): how long what a user does takes — filtering by
  // state, searching, paging; each redraws the table only — measured with performance.now() into data-interaction-ms.
  function measure() {
    const steps = [() => { S.filter = 'failed'; }, () => { S.filter = ''; S.search = '99'; },
                   () => { S.page = 3; }, () => { S.search = ''; S.page = 0; }];
    let worst = 0;
    for (const step of steps) {
      const t0 = performance.now();
      step();
      renderTable();  // what the controls redraw
      worst = Math.max(worst, performance.now() - t0);
    }
    document.body.dataset.interactionMs = worst.toFixed(1);
  }
  window.PEPITA_STATE = S;
  window.PEPITA_RENDER = render;

  const inline = document.getElementById('pepita-data');
  if (inline) {
    window.PEPITA_REPORT = true;
    const t0 = performance.now();
    applySnapshot(JSON.parse(inline.textContent));
    pending = false;
    render();
    document.body.dataset.loadMs = (performance.now() - t0).toFixed(1);
    if (location.hash === '#measure') measure();
  } else {
    // #once (the browser tests): close the stream after the snapshot and one delta, so a
    // headless browser sees the network go idle and dumps the page it rendered from them.
    const once = location.hash === '#once';
    const es = new EventSource('events' + location.search);
    es.addEventListener('snapshot', (e) => applySnapshot(JSON.parse(e.data)));
    es.addEventListener('delta', (e) => {
      applyDelta(JSON.parse(e.data));
      document.body.dataset.deltas = String(+(document.body.dataset.deltas || 0) + 1);
      if (S.finished || once) es.close();
    });
    es.onerror = () => { if (S.finished) es.close(); else $('run-state').textContent = 'reconnecting'; };
  }
})();
