// The duet report: draws DATA (written by `duet report`, src/eval/report.cpp) with Chart.js.
// Everything is inlined in the page; nothing is fetched.
"use strict";

Chart.defaults.animation = false;  // drawn at once: a screenshot or a printout shows every chart
Chart.defaults.font.size = 11;

const main = document.getElementById("main");
const SHAPES = ["circle", "rect", "triangle", "rectRot", "crossRot", "star"];
const LINE_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const fmt = (v, d = 3) => (typeof v === "number" && v >= 0 ? v.toFixed(d) : "n/a");
const classColour = (i, n) => `hsl(${Math.round((360 * i) / Math.max(n, 1))}, 70%, ${i % 2 ? 38 : 55}%)`;

// A chart in a titled box; `config` is Chart.js's; `height` in pixels overrides the box's.
function chart(parent, title, config, tall, height) {
  const canvas = el("canvas");
  const box = el("div", { class: tall ? "box tall" : "box" }, canvas);
  if (height) box.style.height = `${height}px`;
  parent.append(el("div", { class: "chart" }, el("h4", {}, title), box));
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false }, config.options || {});
  return new Chart(canvas, config);
}

function table(head, rows) {
  const t = el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))));
  const b = el("tbody");
  for (const r of rows) b.append(el("tr", {}, ...r.map((c) => el("td", {}, String(c)))));
  t.append(b);
  return el("div", { class: "scroll" }, t);
}

function metricsSection() {
  main.append(el("h2", {}, "Metrics"));
  const rows = [], ledger = [];
  for (const s of DATA.splits) {
    const m = s.metrics;
    const gallery = (m.domains || {}).gallery;
    for (const [qd, q] of Object.entries(m.by_query || { "": m })) {
      const r = q.retrieval;
      rows.push([s.name, qd, fmt(r.map_all), fmt(r["map@100"]), fmt(r["map@200"]), fmt(r["p@100"]),
                 fmt(r["p@200"]), q.retrieval_before_diffusion ? fmt(q.retrieval_before_diffusion.map_all) : "-",
                 fmt((m.accuracy || {})[qd]), fmt((m.accuracy || {})[gallery]), q.queries, m.gallery]);
    }
    const phases = Object.entries(m.phase1 || {}).map(([d, p]) => [`Phase I ${d}`, p.ledger]);
    phases.push(["Phase II", m.phase2.ledger]);
    for (const [name, l] of phases)
      ledger.push([s.name, name, l.wall_s.toFixed(1), l.cpu_s.toFixed(1), l.peak_rss_mib.toFixed(0),
                   (l.flops / 1e12).toFixed(2), l.image_forward + l.image_backward]);
  }
  main.append(table(["split", "query", "map_all", "map@100", "map@200", "p@100", "p@200", "before diffusion",
                     "acc query", "acc gallery", "queries", "gallery"], rows));
  main.append(el("h3", {}, "Compute ledger (training)"));
  main.append(table(["split", "phase", "wall s", "CPU s", "peak MiB", "TFLOPs", "image passes"], ledger));
}

function tradeoffSection() {
  if (!DATA.tradeoff) return;
  main.append(el("h2", {}, "Dual-phase against end to end"));
  main.append(el("p", { class: "note" }, "mAP@all against training compute (bench/tradeoff.sh); methods without training sit at the left edge."));
  const grid = el("div", { class: "charts" });
  main.append(grid);
  const splits = [...new Set(DATA.tradeoff.map((r) => r.split))];
  for (const split of splits) {
    const rows = DATA.tradeoff.filter((r) => r.split === split);
    const datasets = rows.map((r, i) => ({
      label: r.method, data: [{ x: Math.max(r.flops / 1e12, 0.01), y: r.map_all }],
      backgroundColor: LINE_COLOURS[i % LINE_COLOURS.length], pointRadius: 6,
      pointStyle: r.method.startsWith("dual-phase") ? "rectRot" : "circle",
    }));
    chart(grid, `${split}: mAP@all vs training TFLOPs`, {
      type: "scatter", data: { datasets },
      options: { scales: { x: { type: "logarithmic", title: { display: true, text: "training TFLOPs" } },
                           y: { min: 0, title: { display: true, text: "mAP@all" } } } },
    });
  }
}

function curves(grid, s) {
  const qds = Object.keys(s.detail);
  chart(grid, `${s.name}: precision-recall (interpolated)`, {
    type: "line",
    data: { labels: s.detail[qds[0]].pr.recall.map((r) => r.toFixed(2)),
            datasets: qds.map((qd, i) => ({ label: qd, data: s.detail[qd].pr.precision, borderColor: LINE_COLOURS[i],
                                            backgroundColor: LINE_COLOURS[i], pointRadius: 0, borderWidth: 2 })) },
    options: { scales: { x: { title: { display: true, text: "recall" } }, y: { min: 0, max: 1 } } },
  });
  chart(grid, `${s.name}: mAP@K`, {
    type: "line",
    data: { datasets: qds.map((qd, i) => ({
      label: qd, data: s.detail[qd].map_at.k.map((k, j) => ({ x: k, y: s.detail[qd].map_at.map[j] })),
      borderColor: LINE_COLOURS[i], backgroundColor: LINE_COLOURS[i], pointRadius: 2, borderWidth: 2 })) },
    options: { scales: { x: { type: "logarithmic", title: { display: true, text: "K" } }, y: { min: 0, max: 1 } } },
  });
}

function perClass(parent, s, qd) {
  const pc = s.detail[qd].per_class;
  if (!pc.length) return;
  const names = (list) => list.map((c) => `${c.class} (${c.ap.toFixed(2)})`).join(", ");
  parent.append(el("p", {}, `Best classes: ${names(pc.slice(0, 3))}. Worst: ${names(pc.slice(-3).reverse())}.`));
  const grid = el("div", { class: "charts" });
  parent.append(grid);
  chart(grid, `${s.name}, ${qd} queries: AP per class, sorted`, {
    type: "bar",
    data: { labels: pc.map((c) => c.class), datasets: [{ label: "AP", data: pc.map((c) => c.ap), backgroundColor: "#4a78b5" }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { min: 0, max: 1 } } },
  }, true, Math.max(300, 14 * pc.length));
}

function examples(parent, s, qd) {
  const ex = s.detail[qd].examples || [];
  if (!ex.length) return;
  const box = el("div", { class: "examples" });
  parent.append(el("h4", {}, `Example ${qd} queries: best, median and worst AP, top 10 (green: same class)`), box);
  for (const e of ex) {
    const row = el("div", { class: "example" },
      el("div", { class: "label" }, `${e.label}: ${e.class}, AP ${e.ap.toFixed(3)}, first relevant at rank ${e.first_relevant}`));
    row.append(el("img", { class: "query", src: e.thumb || "", alt: `query ${e.class}`, title: e.query }));
    for (const r of e.results)
      row.append(el("img", { class: r.ok ? "ok" : "bad", src: r.thumb || "", alt: r.class, title: `${r.class}: ${r.path}` }));
    box.append(row);
  }
}

function tsneMap(grid, m) {
  if (!m.x) {
    grid.append(el("div", { class: "chart" }, el("h4", {}, m.title), el("p", { class: "note" }, m.note || "")));
    return;
  }
  const n = m.classes.length;
  const datasets = m.domains.map((d, di) => {
    const idx = m.x.map((_, i) => i).filter((i) => m.d[i] === di);
    return {
      label: d, pointStyle: SHAPES[di % SHAPES.length], pointRadius: 3, borderWidth: 0,
      data: idx.map((i) => ({ x: m.x[i], y: m.y[i], c: m.classes[m.c[i]] })),
      backgroundColor: idx.map((i) => classColour(m.c[i], n)),
    };
  });
  chart(grid, m.title, {
    type: "scatter", data: { datasets },
    options: {
      scales: { x: { display: false }, y: { display: false, reverse: true } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.raw.c}` } },
                 legend: { labels: { usePointStyle: true, color: "#333" } } },
    },
  }, true);
}

function splitSection(s) {
  main.append(el("h2", { id: `split-${s.name}` }, `Split ${s.name}`));
  const m = s.metrics;
  if (m.config) main.append(el("p", { class: "meta" }, m.config));
  if (s.note) main.append(el("p", { class: "note" }, s.note));
  if (!s.detail) return;
  const grid = el("div", { class: "charts" });
  main.append(grid);
  curves(grid, s);
  for (const qd of Object.keys(s.detail)) {
    main.append(el("h3", {}, `${qd} queries`));
    perClass(main, s, qd);
    examples(main, s, qd);
  }
  if (s.maps && s.maps.length) {
    main.append(el("h3", {}, "t-SNE maps of the test images (colour: class; shape: domain)"));
    main.append(el("p", { class: "note" }, "Phase I maps each domain alone; the Phase II map shows the domains in the one space the mapper learnt, where a sketch should sit among the photos of its class."));
    const maps = el("div", { class: "charts" });
    main.append(maps);
    for (const map of s.maps) tsneMap(maps, map);
  }
}

document.getElementById("meta").textContent =
  `${DATA.run} · dataset ${DATA.dataset} · config ${DATA.config} · seed ${DATA.seed}${DATA.quick ? " · quick" : ""}`;
metricsSection();
tradeoffSection();
for (const s of DATA.splits) splitSection(s);
