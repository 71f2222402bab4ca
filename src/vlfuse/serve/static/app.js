// The vlfuse web page: one image (picked or dropped) shared by the panels; each panel is shown when /v1/info lists
// its capability. Classify: POST /v1/predict, answers as bars. Ask / Caption: POST /v1/ask, /v1/caption, the
// generated text. Moderate: POST /v1/moderate, the decision and per-label calibrated scores. Search: POST /v1/search, hits as thumbnails (GET image_url) with scores.
// Explain (beside Predict): POST /v1/explain, the heatmap over the image, the modality shares and the coloured words.
// A video run (/v1/info inputs.video): the file is a clip, sent as the 'video' field, and plays beside the answer.
"use strict";

const $ = (id) => document.getElementById(id);
let chosenFile = null;
let uploadField = "image"; // the file field of /v1/predict: "video" for a video run
let clipUrl = null; // the object URL of the clip shown beside the answer

const hint = () => (uploadField === "video" ? "Drop a video clip here, or click to pick one"
  : "Drop an image here, or click to pick one");

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function setFile(file) {
  chosenFile = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.alt = file.name;
  } else {
    preview.removeAttribute("src");
  }
  // a video run shows the clip beside its answer, not here (an image file, e.g. for a bridge, is previewed)
  preview.hidden = !file || (uploadField === "video" && !file.type.startsWith("image/"));
  $("clear-image").hidden = !file;
  $("dropzone-hint").textContent = file ? file.name : hint();
}

function describe(info, has) {
  const parts = [];
  if (has("predict")) {
    const metric = info.metrics && info.metrics.test && info.metrics.test.accuracy;
    const accuracy = typeof metric === "number" ? `, test accuracy ${(100 * metric).toFixed(1)} %` : "";
    const clips = info.video ? `, clips of ${info.video.frames} frames at ${info.video.frame_size} px` : "";
    parts.push(`${info.run}: ${info.task}${info.objective ? ` (${info.objective})` : ""}, ${info.labels.length} labels${clips}, ${info.backend} backend${accuracy}`);
  }
  if (info.bridge) parts.push(`language bridge ${info.bridge.run} (${info.bridge.language_model})`);
  if (info.search) {
    parts.push(`index ${info.search.index}: ${info.search.items} ${info.search.kind}s (run ${info.search.run})`);
  }
  return parts.join(" · ");
}

async function loadInfo() {
  try {
    const response = await fetch("/v1/info");
    const info = await response.json();
    const has = (name) => info.capabilities.includes(name);
    $("model-info").textContent = describe(info, has);
    if (has("predict")) {
      $("top-k").max = String(info.labels.length);
      $("top-k").value = String(Math.min(5, info.labels.length));
      if (!info.inputs.text) $("text-input").hidden = true;
      if (info.inputs.video) setUpVideo(has("ask") || has("caption"));
    }
    $("predict-form").hidden = !has("predict");
    $("explain-submit").hidden = !has("explain");
    $("explain-method").hidden = !has("explain");
    $("moderate-form").hidden = !has("moderate");
    $("ask-form").hidden = !has("ask");
    $("ask-submit").hidden = !has("ask");
    $("question-input").hidden = !has("ask");
    $("caption-submit").hidden = !has("caption");
    if (has("caption") && !has("ask")) $("ask-form").hidden = false;
    $("search-form").hidden = !has("search");
    if (has("search")) {
      $("search-k").max = String(info.search.max_k);
      $("search-k").value = String(Math.min(5, info.search.max_k));
    }
    const readsImage = (has("predict") && (info.inputs.image || info.inputs.video)) || has("ask") || has("caption");
    $("image-panel").hidden = !readsImage;
    $("capabilities").textContent = `endpoints: ${info.capabilities.join(", ")}`;
    document.body.dataset.capabilities = info.capabilities.join(",");
  } catch (err) {
    showError(`could not load model information: ${err}`);
  }
}

// A video run: the file input takes clips (and images too when a bridge shares the page), sent as 'video'.
function setUpVideo(alsoImages) {
  uploadField = "video";
  document.body.dataset.upload = "video";
  $("image-input").accept = `video/*,.mp4,.webm,.avi,.mov,.mkv,.gif${alsoImages ? ",image/*" : ""}`;
  $("dropzone-hint").textContent = chosenFile ? chosenFile.name : hint();
  $("text-input").placeholder = "e.g. which way does the shape move?";
  $("clear-image").textContent = "remove clip";
}

// The uploaded clip beside the answer (object URL of the chosen file), or nothing; a GIF plays in an img.
function showClip(file) {
  const video = $("answer-clip");
  const gif = $("answer-gif");
  if (clipUrl) URL.revokeObjectURL(clipUrl);
  clipUrl = file ? URL.createObjectURL(file) : null;
  const isGif = Boolean(file) && (file.type === "image/gif" || /\.gif$/i.test(file.name));
  if (file && !isGif) {
    video.src = clipUrl;
    video.title = file.name;
  } else {
    video.removeAttribute("src");
    video.load();
  }
  if (isGif) gif.src = clipUrl;
  else gif.removeAttribute("src");
  gif.alt = file ? file.name : "";
  video.hidden = !file || isGif;
  gif.hidden = !isGif;
  $("clip-note").hidden = true;
  $("answer-clip-box").hidden = !file;
}

// POST a form; returns the JSON payload, or null after showing the server's error message.
async function post(url, body, button) {
  $("error").hidden = true;
  button.disabled = true;
  try {
    const response = await fetch(url, { method: "POST", body });
    const payload = await response.json();
    if (!response.ok) {
      showError(payload.error ? payload.error.message : `request failed (${response.status})`);
      return null;
    }
    return payload;
  } catch (err) {
    showError(`request failed: ${err}`);
    return null;
  } finally {
    button.disabled = false;
  }
}

// One list row: the label, a bar as wide as the probability, and a caption (by default the percentage).
function barItem(label, probability, caption) {
  const item = document.createElement("li");
  item.dataset.label = label;
  item.dataset.probability = String(probability);
  const name = document.createElement("span");
  name.className = "label";
  name.textContent = label;
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${(100 * probability).toFixed(1)}%`;
  bar.append(fill);
  const pct = document.createElement("span");
  pct.className = "pct";
  pct.textContent = caption || `${(100 * probability).toFixed(1)} %`;
  item.append(name, bar, pct);
  return item;
}

function render(result) {
  const list = $("results");
  list.replaceChildren();
  for (const p of result.predictions) list.append(barItem(p.label, p.probability));
  $("top-label").textContent = result.predictions.length ? result.predictions[0].label : "";
  const used = [result.used.image ? "image" : null, result.used.video ? "video" : null,
    result.used.text ? "text" : null].filter(Boolean);
  $("answer-meta").textContent = `from ${used.join(" + ")} (${result.backend} backend)`;
  showClip(result.used.video ? chosenFile : null);
  $("answer").hidden = false;
}

// A form with the chosen image (a video run's clip: the 'video' field) and the text of input `textId`, each only when
// given.
function imageTextForm(textId) {
  const body = new FormData();
  if (chosenFile) body.append(uploadField, chosenFile, chosenFile.name);
  const text = $(textId).value.trim();
  if (text) body.append("text", text);
  return body;
}

async function predict(event) {
  event.preventDefault();
  const body = imageTextForm("text-input");
  body.append("top_k", $("top-k").value);
  const payload = await post("/v1/predict", body, $("submit"));
  if (payload) render(payload);
  else $("answer").hidden = true;
}

// Words coloured by their attribution: red for the label, blue against, opacity by magnitude.
function wordSpans(tokens, values) {
  const top = Math.max(...values.map(Math.abs), 1e-12);
  return tokens.map((token, i) => {
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = token;
    span.dataset.score = String(values[i]);
    const rgb = values[i] >= 0 ? "220,50,47" : "38,139,210";
    span.style.background = `rgba(${rgb},${(Math.abs(values[i]) / top).toFixed(2)})`;
    span.title = values[i].toFixed(4);
    return span;
  });
}

function renderExplanation(result) {
  $("explain-label").textContent = `${result.label} (${(100 * result.probability).toFixed(1)} %)`;
  const overlay = $("explain-overlay");
  overlay.hidden = !result.pixels;
  if (result.pixels) overlay.src = result.pixels.overlay_png;
  $("explain-shares").textContent = result.modality
    ? `image ${(100 * result.modality.image_share).toFixed(1)} % · text ${(100 * result.modality.text_share).toFixed(1)} % (exact Shapley)`
    : "one modality only";
  $("explain-words").replaceChildren(...(result.words ? wordSpans(result.words.tokens, result.words.ig) : []));
  const d = result.pixels && result.pixels.deletion;
  $("explain-check").textContent = d
    ? `${result.pixels.method}: removing its top 10 % of pixels lowers p by ${(100 * d.top_drop).toFixed(1)} points, a random 10 % by ${(100 * d.random_drop).toFixed(1)} — check ${d.passed ? "passed" : "FAILED"}`
    : "";
  $("explanation").hidden = false;
}

async function explain() {
  const body = imageTextForm("text-input");
  body.append("method", $("explain-method").value);
  const payload = await post("/v1/explain", body, $("explain-submit"));
  if (payload) renderExplanation(payload);
  else $("explanation").hidden = true;
}

function renderVerdict(result) {
  const list = $("verdict-labels");
  list.replaceChildren();
  for (const [label, v] of Object.entries(result.labels)) {
    const driver = v.driver ? `, from ${v.driver}` : "";
    const item = barItem(label, v.probability, `${(100 * v.probability).toFixed(1)} % · ${v.decision}${driver}`);
    item.dataset.decision = v.decision;
    list.append(item);
  }
  $("verdict-decision").textContent = result.decision;
  $("verdict-decision").dataset.decision = result.decision;
  const used = [result.used.image ? "image" : null, result.used.text ? "text" : null].filter(Boolean);
  const reasons = result.reasons.length ? `because of ${result.reasons.join(", ")}` : "no label flagged";
  $("verdict-meta").textContent = `${reasons}; from ${used.join(" + ")}; calibrated probabilities`;
  $("verdict").hidden = false;
}

async function moderate(event) {
  event.preventDefault();
  const body = imageTextForm("post-input");
  const payload = await post("/v1/moderate", body, $("moderate-submit"));
  if (payload) renderVerdict(payload);
  else $("verdict").hidden = true;
}

// Ask (a question) or caption: the generated text replaces the last one.
async function generate(kind, button) {
  const body = new FormData();
  if (chosenFile) body.append("image", chosenFile, chosenFile.name);
  if (kind === "ask") body.append("question", $("question-input").value);
  $("ask-output").hidden = true;
  const payload = await post(`/v1/${kind}`, body, button);
  if (!payload) return;
  $("ask-kind").textContent = kind === "ask" ? "Answer:" : "Caption:";
  $("ask-text").textContent = kind === "ask" ? payload.answer : payload.caption;
  $("ask-output").dataset.kind = kind;
  $("ask-warning").textContent = payload.warning ? `Warning: ${payload.warning}` : "";
  $("ask-warning").hidden = !payload.warning;
  const ood = payload.ood ? ` · out-of-distribution score ${payload.ood.score.toFixed(1)} (threshold ${payload.ood.threshold.toFixed(1)})` : "";
  $("ask-meta").textContent = `generated in ${payload.seconds.toFixed(2)} s${ood}`;
  $("ask-output").hidden = false;
}

function renderHits(result) {
  const list = $("search-results");
  list.replaceChildren();
  for (const hit of result.hits) {
    const item = document.createElement("li");
    item.dataset.source = hit.source;
    item.dataset.score = String(hit.score);
    if (hit.image_url) {
      const img = document.createElement("img");
      img.src = hit.image_url;
      img.alt = hit.label || hit.source;
      item.append(img);
    }
    const caption = document.createElement("span");
    caption.className = "hit-label";
    caption.textContent = hit.label || hit.source;
    caption.title = hit.source;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    item.append(caption, score);
    list.append(item);
  }
  $("search-meta").textContent =
    `${result.hits.length} ${result.index_kind}s for “${result.query}” in ${(1000 * result.seconds).toFixed(1)} ms`;
}

async function search(event) {
  event.preventDefault();
  const body = new FormData();
  body.append("query", $("query-input").value);
  body.append("k", $("search-k").value);
  const payload = await post("/v1/search", body, $("search-submit"));
  if (payload) renderHits(payload);
  else $("search-results").replaceChildren();
}

function setUp() {
  const zone = $("dropzone");
  $("image-input").addEventListener("change", (e) => setFile(e.target.files[0] || null));
  $("clear-image").addEventListener("click", () => { $("image-input").value = ""; setFile(null); });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("image-input").click(); });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragover"); });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.remove("dragover"); });
  }
  zone.addEventListener("drop", (e) => {
    const file = e.dataTransfer.files[0];
    if (file) setFile(file);
  });
  $("answer-clip").addEventListener("error", () => {
    if (!$("answer-clip").getAttribute("src")) return;
    $("clip-note").textContent = "this browser cannot play the clip's format (the model read it all the same)";
    $("clip-note").hidden = false;
  });
  $("predict-form").addEventListener("submit", predict);
  $("explain-submit").addEventListener("click", explain);
  $("moderate-form").addEventListener("submit", moderate);
  $("ask-form").addEventListener("submit", (e) => { e.preventDefault(); generate("ask", $("ask-submit")); });
  $("caption-submit").addEventListener("click", () => generate("caption", $("caption-submit")));
  $("search-form").addEventListener("submit", search);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setUp);
