// Draws the timeline from the JSON block `timeline-data` (written by sim/src/html.rs).
// Marks are bucketed per BUCKET_PX pixels per row, so the cost of a redraw follows the
// number of visible events, never the DOM. Trace text is only ever set with textContent.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("timeline-data").textContent);
  const chart = document.getElementById("chart");
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const tip = document.getElementById("tip");
  const ov = document.getElementById("overview");
  const octx = ov.getContext("2d");
  const OV_H = 40;
  const LABEL_W = 150, ROW_H = 14, LANE_PAD = 6, AXIS_H = 26, FOOT_H = 8, BUCKET_PX = 4, MIN_SPAN_MS = 2;
  const RED = "#dc2626";

  // Events, column by column.
  const n = D.events.length / 4;
  const T = new Float64Array(n), LANE = new Uint16Array(n), VERB = new Uint16Array(n), FIELDS = new Array(n);
  for (let i = 0; i < n; i++) {
    T[i] = D.events[4 * i];
    LANE[i] = D.events[4 * i + 1];
    VERB[i] = D.events[4 * i + 2];
    FIELDS[i] = D.events[4 * i + 3];
  }
  D.events = null;

  // Layout: lanes top to bottom, one row per kind of mark the lane has.
  const laneTop = [], laneBottom = [], rows = [], rowOf = [];
  let y = AXIS_H;
  D.lanes.forEach(function (lane, li) {
    laneTop[li] = y;
    const map = {};
    lane.rows.forEach(function (mark, k) {
      map[mark] = rows.length;
      rows.push({ lane: li, mark: mark, y: y + LANE_PAD / 2 + k * ROW_H + ROW_H / 2 });
    });
    rowOf.push(map);
    y += Math.max(2, lane.rows.length) * ROW_H + LANE_PAD;
    laneBottom[li] = y;
  });
  const HEIGHT = y + FOOT_H;
  const ROW = new Uint16Array(n);
  for (let i = 0; i < n; i++) ROW[i] = rowOf[LANE[i]][D.verbs[VERB[i]][1]];

  // Evidence: event indices per key, in time order.
  const evidence = D.evidence.map(function () { return []; });
  const isEvidence = new Uint8Array(n);
  for (let j = 0; j < D.highlight.length; j += 2) {
    evidence[D.highlight[j + 1]].push(D.highlight[j]);
    isEvidence[D.highlight[j]] = 1;
  }

  const FULL_MS = Math.max(10, D.end * 1.01);
  const view = { t0: 0, t1: FULL_MS };
  let W = 800, focusT = null, density = null;

  function line(i) {
    const f = FIELDS[i];
    return "t=" + T[i] + "ms " + D.lanes[LANE[i]].name + " " + D.verbs[VERB[i]][0] + (f ? " " + f : "");
  }
  function plotW() { return Math.max(50, W - LABEL_W - 12); }
  function scale() { return plotW() / (view.t1 - view.t0); }
  function xOf(t) { return LABEL_W + (t - view.t0) * scale(); }
  function tOf(x) { return view.t0 + (x - LABEL_W) / scale(); }
  function colOf(t) { return Math.floor(((t - view.t0) * scale()) / BUCKET_PX); }
  function lowerBound(t) {
    let lo = 0, hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (T[mid] < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
  function fmt(t, step) {
    if (step >= 1000) return (t / 1000).toFixed(step % 1000 === 0 ? 0 : 1) + " s";
    return Math.round(t) + " ms";
  }

  const hatch = (function () {
    const c = document.createElement("canvas");
    c.width = c.height = 6;
    const g = c.getContext("2d");
    g.strokeStyle = "rgba(0,0,0,0.35)";
    g.beginPath(); g.moveTo(0, 6); g.lineTo(6, 0); g.stroke();
    return ctx.createPattern(c, "repeat");
  })();

  function shape(name, x, y, r) {
    ctx.beginPath();
    switch (name) {
      case "circle": ctx.arc(x, y, r, 0, 6.2832); ctx.fill(); break;
      case "square": ctx.fillRect(x - r, y - r, 2 * r, 2 * r); break;
      case "triangle": ctx.moveTo(x, y - r - 1); ctx.lineTo(x + r + 1, y + r); ctx.lineTo(x - r - 1, y + r); ctx.fill(); break;
      case "triangle-down": ctx.moveTo(x, y + r + 1); ctx.lineTo(x + r + 1, y - r); ctx.lineTo(x - r - 1, y - r); ctx.fill(); break;
      case "diamond": ctx.moveTo(x, y - r - 1); ctx.lineTo(x + r + 1, y); ctx.lineTo(x, y + r + 1); ctx.lineTo(x - r - 1, y); ctx.fill(); break;
      case "bar": ctx.fillRect(x - 1, y - r - 1, 2.5, 2 * r + 2); break;
      case "cross": ctx.lineWidth = 2; ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r); ctx.stroke(); break;
      case "star": ctx.moveTo(x, y - r - 2); ctx.lineTo(x + 1.5, y - 1.5); ctx.lineTo(x + r + 2, y); ctx.lineTo(x + 1.5, y + 1.5);
        ctx.lineTo(x, y + r + 2); ctx.lineTo(x - 1.5, y + 1.5); ctx.lineTo(x - r - 2, y); ctx.lineTo(x - 1.5, y - 1.5); ctx.fill(); break;
      default: ctx.arc(x, y, r * 0.6, 0, 6.2832); ctx.fill();
    }
  }

  function drawLanes() {
    D.lanes.forEach(function (lane, li) {
      ctx.fillStyle = li % 2 ? "#ffffff" : "#f4f5f8";
      ctx.fillRect(0, laneTop[li], W, laneBottom[li] - laneTop[li]);
      ctx.strokeStyle = "#d4d4d8";
      ctx.beginPath(); ctx.moveTo(0, laneBottom[li] + 0.5); ctx.lineTo(W, laneBottom[li] + 0.5); ctx.stroke();
      ctx.fillStyle = "#111"; ctx.font = "bold 13px system-ui, sans-serif"; ctx.textAlign = "left";
      ctx.fillText(lane.name, 8, laneTop[li] + 15);
      ctx.fillStyle = "#666"; ctx.font = "11px system-ui, sans-serif";
      ctx.fillText(lane.role, 8, laneTop[li] + 28);
    });
    ctx.textAlign = "right"; ctx.font = "10px system-ui, sans-serif";
    rows.forEach(function (r) {
      ctx.fillStyle = D.marks[r.mark].color;
      ctx.fillText(D.marks[r.mark].name, LABEL_W - 6, r.y + 3.5);
    });
    ctx.strokeStyle = "#bbb";
    ctx.beginPath(); ctx.moveTo(LABEL_W - 0.5, AXIS_H); ctx.lineTo(LABEL_W - 0.5, HEIGHT); ctx.stroke();
  }

  function ticks() {
    const raw = (view.t1 - view.t0) * 110 / plotW();
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * p; }).find(function (s) { return s >= raw; });
    const out = [];
    for (let t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) out.push(t);
    return { step: Math.max(1, step), list: out };
  }

  function drawAxis(tk) {
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, AXIS_H);
    ctx.fillStyle = "#333"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center";
    ctx.strokeStyle = "#888";
    tk.list.forEach(function (t) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, AXIS_H - 6); ctx.lineTo(x, AXIS_H); ctx.stroke();
      ctx.fillText(fmt(t, tk.step), x, AXIS_H - 9);
    });
    ctx.textAlign = "left"; ctx.fillStyle = "#666";
    ctx.fillText("simulated time \u2192", 8, AXIS_H - 9);
    ctx.fillStyle = RED;
    for (let j = 0; j < D.highlight.length; j += 2) {
      const x = xOf(T[D.highlight[j]]);
      if (x >= LABEL_W && x <= W) ctx.fillRect(x - 1, AXIS_H - 5, 2, 5);
    }
  }

  function drawWindows() {
    ctx.font = "bold 10px system-ui, sans-serif"; ctx.textAlign = "left";
    D.windows.forEach(function (w) {
      const kind = D.windowKinds[w[1]];
      const x0 = Math.max(LABEL_W - 2, xOf(w[2])), x1 = Math.min(W + 2, xOf(w[3]));
      if (x1 < LABEL_W || x0 > W) return;
      const top = laneTop[w[0]], h = laneBottom[w[0]] - top, width = Math.max(2, x1 - x0);
      ctx.fillStyle = kind.fill; ctx.fillRect(x0, top, width, h);
      if (kind.name === "crash") { ctx.fillStyle = hatch; ctx.fillRect(x0, top, width, h); }
      ctx.fillStyle = kind.ink; ctx.fillRect(x0, top, 1.5, h); ctx.fillRect(x0 + width - 1.5, top, 1.5, h);
      const label = w[4], tw = ctx.measureText(label).width;
      if (width > tw + 8) {
        ctx.fillStyle = "rgba(255,255,255,0.85)"; ctx.fillRect(x0 + 3, top + h - 14, tw + 6, 12);
        ctx.fillStyle = kind.ink; ctx.fillText(label, x0 + 6, top + h - 4.5);
      }
    });
  }

  function drawMarks() {
    const lastCol = new Float64Array(rows.length).fill(-Infinity), count = new Uint32Array(rows.length);
    function flush(r) {
      const m = D.marks[rows[r].mark];
      ctx.globalAlpha = Math.min(1, 0.55 + 0.15 * Math.log2(count[r]));
      ctx.fillStyle = m.color; ctx.strokeStyle = m.color;
      shape(m.shape, LABEL_W + (lastCol[r] + 0.5) * BUCKET_PX, rows[r].y, 3.5);
    }
    const lo = lowerBound(view.t0 - 2 / scale()), hi = lowerBound(view.t1 + 2 / scale());
    for (let i = lo; i < hi; i++) {
      const r = ROW[i], c = colOf(T[i]);
      if (c !== lastCol[r]) {
        if (count[r]) flush(r);
        lastCol[r] = c; count[r] = 0;
      }
      count[r]++;
    }
    for (let r = 0; r < rows.length; r++) if (count[r]) flush(r);
    ctx.globalAlpha = 1;
  }

  function drawEvidence() {
    ctx.lineWidth = 1.5; ctx.strokeStyle = "rgba(220,38,38,0.75)";
    evidence.forEach(function (list) {
      ctx.beginPath();
      list.forEach(function (i, k) {
        const x = xOf(T[i]), y = rows[ROW[i]].y;
        if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
    evidence.forEach(function (list) {
      list.forEach(function (i) {
        const x = xOf(T[i]), y = rows[ROW[i]].y;
        if (x < LABEL_W - 10 || x > W + 10) return;
        ctx.beginPath(); ctx.arc(x, y, 7, 0, 6.2832);
        ctx.fillStyle = "rgba(220,38,38,0.22)"; ctx.fill();
        ctx.lineWidth = 2; ctx.strokeStyle = RED; ctx.stroke();
        ctx.fillStyle = RED; ctx.strokeStyle = RED;
        shape(D.marks[rows[ROW[i]].mark].shape, x, y, 3);
      });
    });
    ctx.lineWidth = 1;
    // Name each key beside its first visible mark, unless that would cover another name.
    const taken = [];
    ctx.font = "bold 11px system-ui, sans-serif"; ctx.textAlign = "left";
    evidence.forEach(function (list, k) {
      const i = list.find(function (j) { return xOf(T[j]) >= LABEL_W && xOf(T[j]) <= W; });
      if (i === undefined) return;
      const label = D.evidence[k], w = ctx.measureText(label).width + 6;
      const x = xOf(T[i]) - w - 8, y = rows[ROW[i]].y - 17;
      if (taken.some(function (r) { return x < r[0] + r[2] && r[0] < x + w && Math.abs(r[1] - y) < 13; })) return;
      taken.push([x, y, w]);
      ctx.fillStyle = "rgba(255,255,255,0.9)"; ctx.fillRect(x, y, w, 13);
      ctx.fillStyle = RED; ctx.fillText(label, x + 3, y + 10);
    });
  }

  // The whole run in one strip: event density, fault windows, evidence, and the range shown.
  function drawOverview() {
    const dpr = window.devicePixelRatio || 1, pw = plotW(), k = pw / FULL_MS;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, W, OV_H);
    octx.fillStyle = "#333"; octx.font = "bold 11px system-ui, sans-serif"; octx.textAlign = "left";
    octx.fillText("whole run", 8, 16);
    octx.fillStyle = "#777"; octx.font = "10px system-ui, sans-serif";
    octx.fillText("drag here to zoom", 8, 30);
    const seen = {};
    D.windows.forEach(function (w) {
      const key = w[1] + ":" + w[2] + ":" + w[3];
      if (seen[key]) return;
      seen[key] = true;
      const kind = D.windowKinds[w[1]];
      octx.fillStyle = kind.fill;
      octx.fillRect(LABEL_W + w[2] * k, 0, Math.max(2, (w[3] - w[2]) * k), OV_H);
      if (kind.name === "crash") { octx.fillStyle = hatch; octx.fillRect(LABEL_W + w[2] * k, 0, Math.max(2, (w[3] - w[2]) * k), OV_H); }
    });
    if (!density) {
      density = new Uint32Array(Math.ceil(pw) + 1);
      for (let i = 0; i < n; i++) density[Math.floor(T[i] * k)]++;
    }
    let max = 1;
    for (let c = 0; c < density.length; c++) max = Math.max(max, density[c]);
    octx.fillStyle = "#7b8794";
    for (let c = 0; c < density.length; c++) {
      if (density[c]) {
        const h = Math.max(1.5, Math.sqrt(density[c] / max) * (OV_H - 6));
        octx.fillRect(LABEL_W + c, OV_H - h, 1, h);
      }
    }
    octx.fillStyle = RED;
    for (let j = 0; j < D.highlight.length; j += 2) octx.fillRect(LABEL_W + T[D.highlight[j]] * k - 0.5, 0, 1.5, OV_H);
    const x0 = LABEL_W + view.t0 * k, x1 = LABEL_W + view.t1 * k;
    octx.fillStyle = "rgba(30,41,59,0.13)";
    octx.fillRect(LABEL_W, 0, x0 - LABEL_W, OV_H);
    octx.fillRect(x1, 0, LABEL_W + pw - x1, OV_H);
    octx.strokeStyle = "#1d4ed8"; octx.lineWidth = 2;
    octx.strokeRect(x0, 1, Math.max(2, x1 - x0), OV_H - 2);
    octx.lineWidth = 1;
  }

  // A failing run opens on its evidence and the fault windows near it; `#t=FROM-TO` (ms) or
  // `#all` in the address picks the range instead.
  function initialView() {
    const m = /t=(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)/.exec(location.hash);
    if (m) return [Number(m[1]), Number(m[2])];
    if (location.hash === "#all" || D.highlight.length === 0) return [0, FULL_MS];
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < D.highlight.length; j += 2) {
      lo = Math.min(lo, T[D.highlight[j]]); hi = Math.max(hi, T[D.highlight[j]]);
    }
    const near0 = lo - 2000, near1 = hi + 2000;
    D.windows.forEach(function (w) {
      if (w[3] >= near0 && w[2] <= near1) {
        lo = Math.min(lo, Math.max(w[2], near0)); hi = Math.max(hi, Math.min(w[3], near1));
      }
    });
    const pad = Math.max(100, (hi - lo) * 0.08);
    return [lo - pad, hi + pad];
  }

  function draw() {
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, HEIGHT);
    drawLanes();
    const tk = ticks();
    ctx.save();
    ctx.beginPath(); ctx.rect(LABEL_W, AXIS_H, W - LABEL_W, HEIGHT - AXIS_H); ctx.clip();
    ctx.strokeStyle = "rgba(0,0,0,0.07)";
    tk.list.forEach(function (t) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, AXIS_H); ctx.lineTo(x, HEIGHT); ctx.stroke();
    });
    drawWindows();
    drawMarks();
    drawEvidence();
    if (focusT !== null) {
      ctx.strokeStyle = RED; ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(xOf(focusT), AXIS_H); ctx.lineTo(xOf(focusT), HEIGHT); ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.restore();
    drawAxis(tk);
    drawOverview();
    document.getElementById("range").textContent =
      "showing " + fmt(view.t0, 1) + " \u2013 " + fmt(view.t1, 1) + " of " + fmt(FULL_MS, 1) + " (" + n + " events)";
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    W = chart.clientWidth;
    canvas.style.width = W + "px"; canvas.style.height = HEIGHT + "px";
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(HEIGHT * dpr);
    ov.style.width = W + "px"; ov.style.height = OV_H + "px";
    ov.width = Math.round(W * dpr); ov.height = Math.round(OV_H * dpr);
    density = null;
    draw();
  }

  function setView(t0, t1) {
    let span = Math.min(FULL_MS, Math.max(MIN_SPAN_MS, t1 - t0));
    t0 = Math.max(0, Math.min(t0, FULL_MS - span));
    view.t0 = t0; view.t1 = t0 + span;
    draw();
  }
  function zoomAround(t, factor) {
    const span = (view.t1 - view.t0) * factor;
    setView(t - (t - view.t0) * factor, t - (t - view.t0) * factor + span);
  }

  // What is under the pointer: the events of the bucket, and the windows at that time.
  function under(x, y) {
    if (x < LABEL_W || y < AXIS_H) return null;
    const li = laneTop.findIndex(function (top, k) { return y >= top && y < laneBottom[k]; });
    if (li < 0) return null;
    const t = tOf(x);
    const windows = D.windows.filter(function (w) { return w[0] === li && w[2] <= t && t <= w[3]; });
    let r = -1;
    rows.forEach(function (row, k) { if (row.lane === li && Math.abs(row.y - y) <= ROW_H / 2) r = k; });
    let hits = [];
    if (r >= 0) {
      const col = Math.floor((x - LABEL_W) / BUCKET_PX);
      [col, col - 1, col + 1].some(function (c) {
        const tA = view.t0 + (c * BUCKET_PX) / scale();
        for (let i = lowerBound(tA - 1 / scale()); i < n && T[i] <= tA + (BUCKET_PX + 1) / scale(); i++) {
          if (ROW[i] === r && colOf(T[i]) === c) hits.push(i);
        }
        return hits.length > 0;
      });
      hits.sort(function (a, b) { return isEvidence[b] - isEvidence[a] || a - b; });
    }
    return { lane: li, row: r, hits: hits, windows: windows };
  }

  function describe(u, max) {
    const out = u.windows.map(function (w) {
      return "[" + D.windowKinds[w[1]].name + " " + w[2] + "\u2013" + w[3] + " ms: " + w[4] + "]";
    });
    u.hits.slice(0, max).forEach(function (i) { out.push((isEvidence[i] ? "EVIDENCE  " : "") + line(i)); });
    if (u.hits.length > max) out.push("\u2026 and " + (u.hits.length - max) + " more: click to list them");
    return out.join("\n");
  }

  let drag = null;
  canvas.addEventListener("mousedown", function (e) {
    drag = { x: e.offsetX, t0: view.t0, t1: view.t1, moved: false };
  });
  window.addEventListener("mouseup", function (e) {
    if (drag && !drag.moved && e.target === canvas) pin(under(e.offsetX, e.offsetY));
    drag = null;
  });
  canvas.addEventListener("mousemove", function (e) {
    if (drag && Math.abs(e.offsetX - drag.x) > 3) {
      drag.moved = true;
      const dt = ((e.offsetX - drag.x) * (drag.t1 - drag.t0)) / plotW();
      setView(drag.t0 - dt, drag.t1 - dt);
      tip.hidden = true;
      return;
    }
    const u = under(e.offsetX, e.offsetY);
    if (!u || (u.hits.length === 0 && u.windows.length === 0)) { tip.hidden = true; return; }
    tip.textContent = describe(u, 12);
    tip.hidden = false;
    const left = e.offsetX + 16 + tip.offsetWidth > W ? Math.max(0, e.offsetX - 16 - tip.offsetWidth) : e.offsetX + 16;
    tip.style.left = left + "px"; tip.style.top = e.offsetY + 14 + "px";
  });
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    zoomAround(tOf(Math.max(LABEL_W, e.offsetX)), e.deltaY > 0 ? 1.25 : 0.8);
  }, { passive: false });

  let brush = null;
  function ovT(x) { return ((x - LABEL_W) * FULL_MS) / plotW(); }
  ov.addEventListener("mousedown", function (e) { brush = { t: ovT(e.offsetX), moved: false }; });
  ov.addEventListener("mousemove", function (e) {
    if (!brush) return;
    const t = ovT(e.offsetX);
    if (Math.abs(t - brush.t) * plotW() / FULL_MS > 3) {
      brush.moved = true;
      setView(Math.min(t, brush.t), Math.max(t, brush.t));
    }
  });
  ov.addEventListener("mouseup", function (e) {
    if (brush && !brush.moved) {
      const half = (view.t1 - view.t0) / 2, t = ovT(e.offsetX);
      setView(t - half, t + half);
    }
    brush = null;
  });
  ov.addEventListener("mouseleave", function () { brush = null; });

  function pin(u) {
    if (!u || u.hits.length === 0) return;
    const section = document.getElementById("details");
    const first = T[u.hits[0]], last = T[u.hits[u.hits.length - 1]];
    document.getElementById("details-title").textContent = u.hits.length + " trace lines on " +
      D.lanes[u.lane].name + " (" + D.marks[rows[u.row].mark].label + "), t=" + first + "\u2013" + last + " ms";
    document.getElementById("details-lines").textContent = describe(u, 2000);
    section.hidden = false;
  }

  function focusOn(t0, t1) {
    const pad = Math.max(150, (t1 - t0) * 0.25);
    focusT = t0;
    setView(t0 - pad, t1 + pad);
    chart.scrollIntoView({ block: "nearest" });
  }
  document.querySelectorAll("tr[data-t]").forEach(function (tr) {
    tr.addEventListener("click", function () {
      const t0 = Number(tr.dataset.t);
      focusOn(t0, tr.dataset.u ? Number(tr.dataset.u) : t0);
    });
  });
  document.getElementById("btn-all").onclick = function () { focusT = null; setView(0, FULL_MS); };
  document.getElementById("btn-in").onclick = function () { zoomAround((view.t0 + view.t1) / 2, 0.5); };
  document.getElementById("btn-out").onclick = function () { zoomAround((view.t0 + view.t1) / 2, 2); };
  const evButton = document.getElementById("btn-evidence");
  if (D.highlight.length === 0) evButton.hidden = true;
  evButton.onclick = function () {
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < D.highlight.length; j += 2) {
      lo = Math.min(lo, T[D.highlight[j]]); hi = Math.max(hi, T[D.highlight[j]]);
    }
    focusT = null;
    const pad = Math.max(100, (hi - lo) * 0.1);
    setView(lo - pad, hi + pad);
  };
  window.addEventListener("resize", resize);
  const start = initialView();
  view.t0 = start[0]; view.t1 = start[1];
  resize();
  setView(start[0], start[1]);
})();
