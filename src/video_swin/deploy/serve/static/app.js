// The page of `video-swin serve`: choose or drop a video, watch it with its top 5, its timeline and, on
// request, its explanation. Errors are the service's one-line messages.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, service: null, videoUrl: null, explainUrl: null };

function apiKey() {
  return sessionStorage.getItem("video-swin-api-key") || "";
}

function headers() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

// The service's one line for a failed answer: {"error": "..."}, or the status when there is no body.
async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = `${response.status}: ${body.error}`;
  } catch (_) { /* not JSON */ }
  if (response.status === 401) $("key-box").hidden = false;
  return message;
}

function show(id, text) {
  const el = $(id);
  el.textContent = text || "";
  el.hidden = !text;
}

async function post(path, query) {
  const form = new FormData();
  form.append("file", state.file, state.file.name);
  const url = query ? `${path}?${new URLSearchParams(query)}` : path;
  return fetch(url, { method: "POST", body: form, headers: headers() });
}

async function describe() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) {
    show("model", "");
    show("error", await failure(response));
    return;
  }
  state.service = await response.json();
  const s = state.service;
  $("model").textContent = `${s.name} · ${s.variant} · ${s.num_classes} classes · ${s.protocol.views} views of ` +
    `${s.protocol.clip_len}×${s.protocol.crop_size}²`;
  $("model").hidden = false;
  show("error", "");
}

function chosen(file) {
  if (!file) return;
  state.file = file;
  const limit = state.service && state.service.service.max_upload_bytes;
  if (limit && file.size > limit) {
    show("error", `413: upload too large: ${(file.size / 1048576).toFixed(1)} MiB is over the limit of ` +
      `${(limit / 1048576).toFixed(1)} MiB`);
    return;
  }
  if (state.videoUrl) URL.revokeObjectURL(state.videoUrl);
  state.videoUrl = URL.createObjectURL(file);
  const player = $("player");
  player.src = state.videoUrl;
  player.play().catch(() => {});
  $("file-name").textContent = file.name;
  $("result").hidden = false;
  $("timeline").hidden = false;
  $("explain").hidden = false;
  clearExplanation();
  classify();
  timeline();
}

async function classify() {
  show("error", "");
  $("bars").replaceChildren();
  $("timings").textContent = "";
  $("status").textContent = "scoring…";
  const query = { top_k: 5 };
  if ($("views").value) query.views = $("views").value;
  let response;
  try {
    response = await post("/v1/classify", query);
  } catch (err) {
    $("status").textContent = "";
    show("error", `the service did not answer: ${err.message}`);
    return;
  }
  $("status").textContent = "";
  if (!response.ok) {
    show("error", await failure(response));
    return;
  }
  renderScores(await response.json());
}

function renderScores(record) {
  const bars = record.top_k.map(({ label, probability }) => {
    const item = document.createElement("li");
    item.className = "bar";
    item.dataset.label = label;
    item.dataset.probability = String(probability);
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    name.title = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(100 * probability).toFixed(2)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * probability).toFixed(1)} %`;
    item.append(name, track, value);
    return item;
  });
  $("bars").replaceChildren(...bars);
  const t = record.timings;
  $("timings").textContent = `${t.views} view${t.views === 1 ? "" : "s"} · decode ${t.decode_s.toFixed(2)} s · ` +
    `model ${t.model_s.toFixed(2)} s · total ${t.total_s.toFixed(2)} s`;
}

async function timeline() {
  $("timeline-plot").replaceChildren();
  show("timeline-message", "computing the timeline…");
  let response;
  try {
    response = await post("/v1/timeline");
  } catch (err) {
    show("timeline-message", `the service did not answer: ${err.message}`);
    return;
  }
  if (!response.ok) {
    show("timeline-message", await failure(response));
    return;
  }
  show("timeline-message", "");
  renderTimeline(await response.json());
}

// The segments of the ActivityNet results format: {"results": {"<video>": [{label, score, segment: [s, e]}]}}.
function segmentsOf(data) {
  if (Array.isArray(data.segments)) return data.segments;
  const results = data.results || {};
  const first = Object.values(results)[0];
  return Array.isArray(first) ? first : [];
}

function svg(tag, attributes, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// One row per label, a bar per segment (its opacity the score), seconds along the bottom.
function renderTimeline(data) {
  const segments = segmentsOf(data);
  const plot = $("timeline-plot");
  if (!segments.length) {
    plot.replaceChildren();
    show("timeline-message", "no segments above the threshold");
    return;
  }
  const labels = [...new Set(segments.map((s) => s.label))];
  const end = Math.max(data.duration_s || 0, ...segments.map((s) => s.segment[1]));
  const left = 170, width = 900, row = 26, top = 8, height = top + labels.length * row + 30;
  const x = (t) => left + (width - left - 10) * (end > 0 ? t / end : 0);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "timeline" });
  labels.forEach((label, i) => {
    chart.append(svg("text", { x: left - 8, y: top + i * row + 17, "text-anchor": "end" }, label));
  });
  for (const s of segments) {
    const i = labels.indexOf(s.label);
    const bar = svg("rect", {
      class: "seg", x: x(s.segment[0]), y: top + i * row + 4, width: Math.max(1, x(s.segment[1]) - x(s.segment[0])),
      height: row - 8, rx: 3, "fill-opacity": 0.35 + 0.65 * Math.max(0, Math.min(1, s.score ?? 1)),
    });
    bar.append(svg("title", {}, `${s.label}: ${s.segment[0].toFixed(2)}–${s.segment[1].toFixed(2)} s, score ${(s.score ?? 0).toFixed(3)}`));
    chart.append(bar);
  }
  const axisY = top + labels.length * row + 4;
  chart.append(svg("line", { class: "axis", x1: left, x2: width - 10, y1: axisY, y2: axisY }));
  const step = niceStep(end / 8);
  for (let t = 0; t <= end + 1e-9; t += step) {
    chart.append(svg("line", { class: "axis", x1: x(t), x2: x(t), y1: axisY, y2: axisY + 4 }));
    chart.append(svg("text", { x: x(t), y: axisY + 17, "text-anchor": "middle" }, `${+t.toFixed(2)} s`));
  }
  plot.replaceChildren(chart);
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

function clearExplanation() {
  if (state.explainUrl) URL.revokeObjectURL(state.explainUrl);
  state.explainUrl = null;
  $("explain-video").hidden = true;
  $("explain-image").hidden = true;
  show("explain-message", "");
}

async function explain() {
  if (!state.file) return;
  clearExplanation();
  const button = $("explain-button");
  button.disabled = true;
  show("explain-message", "computing the explanation…");
  try {
    const response = await post("/v1/explain");
    if (!response.ok) {
      show("explain-message", await failure(response));
      return;
    }
    const blob = await response.blob();
    state.explainUrl = URL.createObjectURL(blob);
    show("explain-message", "");
    if (blob.type.startsWith("image/")) {
      $("explain-image").src = state.explainUrl;
      $("explain-image").hidden = false;
    } else {
      $("explain-video").src = state.explainUrl;
      $("explain-video").hidden = false;
      $("explain-video").play().catch(() => {});
    }
  } catch (err) {
    show("explain-message", `the service did not answer: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function setUp() {
  $("file").addEventListener("change", (e) => chosen(e.target.files[0]));
  $("views").addEventListener("change", () => { if (state.file) classify(); });
  $("explain-button").addEventListener("click", explain);
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", (e) => {
    sessionStorage.setItem("video-swin-api-key", e.target.value.trim());
    describe();
  });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => chosen(e.dataTransfer.files[0]));
  describe();
}

document.addEventListener("DOMContentLoaded", setUp);
