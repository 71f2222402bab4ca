// The vlfuse web page: pick or drop an image, type a text, POST /v1/predict, show the answers as bars.
"use strict";

const $ = (id) => document.getElementById(id);
let chosenFile = null;

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
  preview.hidden = !file;
  $("clear-image").hidden = !file;
  $("dropzone-hint").textContent = file ? file.name : "Drop an image here, or click to pick one";
}

async function loadInfo() {
  try {
    const response = await fetch("/v1/info");
    const info = await response.json();
    const metric = info.metrics && info.metrics.test && info.metrics.test.accuracy;
    const accuracy = typeof metric === "number" ? `, test accuracy ${(100 * metric).toFixed(1)} %` : "";
    $("model-info").textContent =
      `${info.run}: ${info.task}, ${info.labels.length} labels, ${info.backend} backend${accuracy}`;
    $("top-k").max = String(info.labels.length);
    $("top-k").value = String(Math.min(5, info.labels.length));
    if (!info.inputs.image) $("dropzone").hidden = true;
    if (!info.inputs.text) $("text-input").hidden = true;
    $("capabilities").textContent = `endpoints: ${info.capabilities.join(", ")}`;
  } catch (err) {
    showError(`could not load model information: ${err}`);
  }
}

function render(result) {
  const list = $("results");
  list.replaceChildren();
  for (const p of result.predictions) {
    const item = document.createElement("li");
    item.dataset.label = p.label;
    item.dataset.probability = String(p.probability);
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = p.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${(100 * p.probability).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(100 * p.probability).toFixed(1)} %`;
    item.append(name, bar, pct);
    list.append(item);
  }
  $("top-label").textContent = result.predictions.length ? result.predictions[0].label : "";
  const used = [result.used.image ? "image" : null, result.used.text ? "text" : null].filter(Boolean);
  $("answer-meta").textContent = `from ${used.join(" + ")} (${result.backend} backend)`;
  $("answer").hidden = false;
}

async function predict(event) {
  event.preventDefault();
  $("error").hidden = true;
  const body = new FormData();
  if (chosenFile) body.append("image", chosenFile, chosenFile.name);
  const text = $("text-input").value.trim();
  if (text) body.append("text", text);
  body.append("top_k", $("top-k").value);
  $("submit").disabled = true;
  try {
    const response = await fetch("/v1/predict", { method: "POST", body });
    const payload = await response.json();
    if (!response.ok) {
      $("answer").hidden = true;
      showError(payload.error ? payload.error.message : `request failed (${response.status})`);
      return;
    }
    render(payload);
  } catch (err) {
    showError(`request failed: ${err}`);
  } finally {
    $("submit").disabled = false;
  }
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
  $("predict-form").addEventListener("submit", predict);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", setUp);
