// duet's page: draw (mouse, touch or pen) or drop an image, and see the gallery ranked for it.
// Plain JavaScript with no dependencies: the page works with no network beyond the duet server.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), board = $("board"), preview = $("preview"), grid = $("results");
const statusLine = $("status"), domainSelect = $("domain"), kSelect = $("k");
const ctx = canvas.getContext("2d");
const SEND_SIZE = 512;   // the drawing is sent as a SEND_SIZE x SEND_SIZE PNG, black on white
const DEBOUNCE_MS = 250; // a search starts this long after the last stroke ends

// Strokes in coordinates relative to the board (0..1), so a resize or rotation redraws them.
let strokes = [], current = null, info = null, pending = null, timer = 0;

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", !!isError);
}

function setState(state) { document.body.dataset.state = state; }

function resize() {
  const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(r.width * dpr));
  canvas.height = Math.max(1, Math.round(r.height * dpr));
  redraw(ctx, canvas.width, canvas.height);
}

function redraw(c, w, h) {
  c.fillStyle = "#fff";
  c.fillRect(0, 0, w, h);
  c.strokeStyle = "#000";
  c.lineCap = c.lineJoin = "round";
  for (const s of strokes.concat(current ? [current] : [])) {
    c.lineWidth = s.width * w;
    c.beginPath();
    s.points.forEach(([x, y], i) => (i ? c.lineTo(x * w, y * h) : c.moveTo(x * w, y * h)));
    if (s.points.length === 1) c.lineTo(s.points[0][0] * w + 0.01, s.points[0][1] * h);
    c.stroke();
  }
  $("undo").disabled = strokes.length === 0;
}

function point(e) {
  const r = canvas.getBoundingClientRect();
  return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height];
}

canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 && e.pointerType === "mouse") return;
  canvas.setPointerCapture(e.pointerId);
  showCanvas();
  const r = canvas.getBoundingClientRect();
  current = { width: Number($("width").value) / r.width, points: [point(e)] };
  redraw(ctx, canvas.width, canvas.height);
});
canvas.addEventListener("pointermove", (e) => {
  if (!current) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) current.points.push(point(ev));
  redraw(ctx, canvas.width, canvas.height);
});
function endStroke() {
  if (!current) return;
  strokes.push(current);
  current = null;
  redraw(ctx, canvas.width, canvas.height);
  searchDrawingSoon();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

$("undo").addEventListener("click", () => {
  strokes.pop();
  redraw(ctx, canvas.width, canvas.height);
  if (strokes.length) searchDrawingSoon(); else clearResults();
});
$("clear").addEventListener("click", () => {
  strokes = [];
  showCanvas();
  redraw(ctx, canvas.width, canvas.height);
  clearResults();
});

function showCanvas() {
  preview.hidden = true;
  preview.removeAttribute("src");
}

function clearResults() {
  if (pending) pending.abort();
  clearTimeout(timer);
  grid.replaceChildren();
  setState("idle");
  setStatus(info ? `${info.images} images. Draw, or drop an image.` : "");
}

function searchDrawingSoon() {
  clearTimeout(timer);
  if (!info) return;
  timer = setTimeout(() => {
    const off = document.createElement("canvas");
    off.width = off.height = SEND_SIZE;
    redraw(off.getContext("2d"), SEND_SIZE, SEND_SIZE);
    off.toBlob((png) => search(png, info.draw_domain, "image/png"), "image/png");
    timer = 0;
  }, DEBOUNCE_MS);
}

// One search at a time: a newer query cancels the request of the one before (and a drawing's
// search still waiting for its debounce).
async function search(body, domain, type, like) {
  if (pending) pending.abort();
  clearTimeout(timer);
  const controller = new AbortController();
  pending = controller;
  const params = new URLSearchParams({ k: kSelect.value });
  if (like !== undefined) params.set("like", like); else params.set("domain", domain);
  setState("searching");
  setStatus("Searching…");
  try {
    const res = await fetch("/api/search?" + params, {
      method: "POST", body: body || null, signal: controller.signal,
      headers: body ? { "Content-Type": type || "application/octet-stream" } : {},
    });
    const answer = await res.json();
    if (!res.ok) throw new Error(answer.error || `HTTP ${res.status}`);
    if (pending !== controller) return;
    show(answer);
  } catch (err) {
    if (err.name === "AbortError") return;
    setState("error");
    setStatus(err.message, true);
  } finally {
    if (pending === controller) pending = null;
  }
}

function show(answer) {
  const figures = answer.results.map((r, i) => {
    const fig = document.createElement("figure");
    fig.className = "hit";
    fig.dataset.id = r.id;
    fig.dataset.path = r.path;
    fig.dataset.rank = i + 1;
    fig.title = `${i + 1}. ${r.path}\nclick: search with this image`;
    const img = document.createElement("img");
    img.src = `/api/image/${r.id}`;
    img.alt = r.class || r.path;
    const cap = document.createElement("figcaption");
    const cls = document.createElement("span");
    cls.className = "cls";
    cls.textContent = r.class || r.path.split("/").pop();
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    cap.append(cls, score);
    fig.append(img, cap);
    fig.addEventListener("click", () => {
      preview.src = img.src;
      preview.hidden = false;
      search(null, null, null, r.id);
    });
    return fig;
  });
  grid.replaceChildren(...figures);
  const note = answer.unseen ? " · no learnt class fits: ranked by resemblance" : "";
  setStatus(`${answer.results.length} of ${info.images} · ${answer.took_ms.toFixed(0)} ms (${answer.domain})${note}`);
  setState("done");
}

function searchFile(file) {
  if (!file) return;
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  search(file, domainSelect.value, file.type);
}

$("file").addEventListener("change", (e) => searchFile(e.target.files[0]));
for (const target of [board, document.body]) {
  target.addEventListener("dragover", (e) => { e.preventDefault(); board.classList.add("dragging"); });
  target.addEventListener("dragleave", () => board.classList.remove("dragging"));
  target.addEventListener("drop", (e) => {
    e.preventDefault();
    e.stopPropagation();
    board.classList.remove("dragging");
    searchFile(e.dataTransfer.files[0]);
  });
}

window.addEventListener("resize", resize);
resize();
setState("loading");
fetch("/api/info").then((r) => r.json()).then((i) => {
  info = i;
  for (const d of i.domains) domainSelect.add(new Option(d, d, false, d === i.query_domains[0]));
  clearResults();
}).catch((err) => { setState("error"); setStatus("Cannot reach the duet server: " + err.message, true); });
