// The DFI editor page: talks only to the server that served it (server.py's JSON API).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {info: null, photo: null, target: "all", job: null, poll: null, sweep: null};
const SETTINGS = ["delta", "k", "tv_weight", "iterations"];

function say(text) {  // the page's one error line; "" hides it
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function call(method, url, body, headers) {
  let response;
  try {
    response = await fetch(url, {method, body, headers});
  } catch (e) {
    throw new Error("the server does not answer (is `make serve` still running?)");
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (e) {
    answer = null;
  }
  if (!response.ok) {
    throw new Error((answer && answer.error) || `the server answered ${response.status}`);
  }
  return answer;
}

function megabytes(bytes) {
  return `${+(bytes / 1e6).toFixed(1)} MB`;
}

async function loadInfo() {
  const info = state.info = await call("GET", "/api/info");
  $("limit").textContent = `Any image file up to ${megabytes(info.max_upload_bytes)}.` +
    (info.faces ? "" : " Face detection is not installed (pip install -e '.[serve]'): " +
     "whole images only.");
  if (!$("attributes").children.length) {
    for (const name of info.attributes) {
      const label = document.createElement("label");
      label.className = "attribute";
      label.innerHTML = `<input type="checkbox" value="${name}"> ${name.replace("_", " ")}`;
      $("attributes").append(label);
    }
    for (const field of SETTINGS) {
      $(field).value = info.defaults[field];
      $(`${field}-default`).textContent = `default ${info.defaults[field]}`;
    }
    const d = Math.abs(info.defaults.delta) || 1;
    Object.assign($("delta-range"), {min: 0, max: 3 * d, step: d / 20, value: info.defaults.delta});
    $("delta-value").textContent = info.defaults.delta;
  }
  if (info.load_error) {
    $("status").textContent = info.load_error;
  } else if (info.loading) {
    $("status").textContent = `Loading the editor (once): ${info.loading}…`;
    setTimeout(() => loadInfo().catch((e) => say(e.message)), 1000);
  } else {
    $("status").textContent = "Ready.";
  }
  updateButtons();
}

function updateButtons() {
  const picked = document.querySelectorAll("#attributes input:checked").length;
  const busy = state.job && ["queued", "running"].includes(state.job.state);
  $("edit").disabled = !state.photo || !picked || (state.target !== "whole" && !state.photo.faces.length);
  $("cancel").hidden = !busy;
}

function showPhoto(photo) {
  state.photo = photo;
  state.target = photo.faces.length ? "all" : "whole";
  $("input").src = photo.url;
  $("photo-name").textContent = `(${photo.name}, ${photo.width}×${photo.height})`;
  $("result-figure").hidden = true;
  const svg = $("boxes");
  svg.setAttribute("viewBox", `0 0 ${photo.width} ${photo.height}`);
  svg.innerHTML = "";
  photo.faces.forEach((b, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1], "data-face": i})
      .forEach(([k, v]) => rect.setAttribute(k, v));
    rect.addEventListener("click", () => pickTarget(i));
    svg.append(rect);
  });
  const targets = $("targets");
  targets.innerHTML = "";
  const option = (value, text) => {
    const label = document.createElement("label");
    label.innerHTML = `<input type="radio" name="target" value="${value}"> ${text}`;
    label.querySelector("input").addEventListener("change", () => pickTarget(value));
    targets.append(label);
  };
  if (photo.faces.length) {
    if (photo.faces.length > 1) option("all", `All ${photo.faces.length} faces`);
    photo.faces.forEach((_, i) => option(i, `Face ${i + 1}` + (i ? "" : " (the largest)")));
  } else {
    const p = document.createElement("p");
    p.id = "no-face";
    p.textContent = photo.detector ? "No face found in this photo." : "Face detection is not installed.";
    targets.append(p);
  }
  option("whole", "Edit the whole image (no face alignment)");
  pickTarget(photo.faces.length === 1 ? 0 : state.target);
}

function pickTarget(target) {
  state.target = target;
  for (const input of document.querySelectorAll("#targets input")) {
    input.checked = input.value === String(target);
  }
  for (const rect of $("boxes").children) {
    rect.classList.toggle("picked", target === "all" || String(target) === rect.dataset.face);
  }
  updateButtons();
}

async function addPhoto(request) {
  say("");
  $("status").textContent = "Reading the photo and looking for faces…";
  try {
    showPhoto(await request());
    $("status").textContent = state.info && state.info.loading ? $("status").textContent : "Ready.";
  } catch (e) {
    say(e.message);
    $("status").textContent = "";
  }
  if (state.info && state.info.loading) loadInfo().catch((e) => say(e.message));
}

function upload(file) {
  if (file.size > state.info.max_upload_bytes) {
    say(`${file.name} is ${megabytes(file.size)}, over this server's upload limit of ` +
        `${megabytes(state.info.max_upload_bytes)}.`);
    return;
  }
  addPhoto(() => call("POST", "/api/photos", file,
                      {"X-Filename": encodeURIComponent(file.name), "Content-Type": "application/octet-stream"}));
}

function settings() {
  const out = {};
  for (const field of SETTINGS) out[field] = Number($(field).value);
  return out;
}

function showProgress(job) {
  $("progress").hidden = false;
  const bar = $("bar");
  if (job.total) {
    bar.max = job.total;
    bar.value = job.done;
  } else {
    bar.removeAttribute("value");  // indeterminate
  }
  const count = job.total ? ` ${job.done}/${job.total}` : "";
  $("progress-text").textContent = `${job.state}: ${job.stage}${count} (${job.elapsed_s.toFixed(1)} s)`;
}

function showResult(job) {
  const out = job.outputs;
  if (!out.result) return;
  const figure = $("result-figure");
  if (figure.dataset.job !== job.id) {
    figure.dataset.job = job.id;
    figure.hidden = false;
    $("result").src = out.result;
    $("result").dataset.after = out.result;
    $("download").href = out.result;
    $("download").download = out.download;
    $("result-label").dataset.after = $("result-label").textContent =
      `Result: ${job.attributes.join(" + ")} at δ = ${job.delta}`;
    $("toggle").setAttribute("aria-pressed", "false");
    $("toggle").textContent = "Show before";
    stopSweep();
    $("play").hidden = true;
  }
  if (out.sweep && !state.sweep && $("play").hidden) {
    $("play").hidden = false;
    playSweep(out.sweep);
  }
}

function stopSweep() {
  if (state.sweep) {
    clearInterval(state.sweep.timer);
    $("result").src = $("result").dataset.after;
    $("result-label").textContent = $("result-label").dataset.after;
  }
  state.sweep = null;
  $("play").textContent = "Play δ sweep";
}

function playSweep(frames) {
  stopSweep();
  // 0 → δ and back: input, the sweep's δs, the result, then down again.
  const order = frames.concat(frames.slice(1, -1).reverse());
  let i = 0;
  const show = () => {
    const frame = order[i++ % order.length];
    $("result").src = frame.url;
    $("result-label").textContent = `δ sweep: δ = ${+frame.delta.toPrecision(3)}`;
  };
  state.sweep = {timer: setInterval(show, 400)};
  show();
  $("play").textContent = "Stop";
}

function follow(job) {
  state.job = job;
  showProgress(job);
  showResult(job);
  updateButtons();
  const final = ["done", "error", "cancelled", "superseded"].includes(job.state);
  if (job.state === "error") say(job.message);
  if (job.state === "cancelled") $("progress-text").textContent = "Cancelled.";
  if (final) {
    if (job.state === "done") $("progress-text").textContent = `Done in ${job.elapsed_s.toFixed(1)} s.`;
    if (!job.total) $("bar").value = $("bar").max = 1;
    return;
  }
  state.poll = setTimeout(async () => {
    try {
      const next = await call("GET", `/api/jobs/${job.id}`);
      if (state.job && state.job.id === job.id) follow(Object.assign(next, {attributes: job.attributes, delta: job.delta}));
    } catch (e) {
      say(e.message);
    }
  }, 150);
}

async function edit() {
  say("");
  clearTimeout(state.poll);
  const attributes = [...document.querySelectorAll("#attributes input:checked")].map((x) => x.value);
  const request = Object.assign({photo: state.photo.id, attributes, target: state.target}, settings());
  // Shown at once; the server's own stages replace it within a poll (150 ms).
  showProgress({state: "queued", stage: "sending", done: 0, total: 0, elapsed_s: 0});
  try {
    const job = await call("POST", "/api/edits", JSON.stringify(request),
                           {"Content-Type": "application/json"});
    follow(Object.assign(job, {attributes, delta: request.delta}));
  } catch (e) {
    $("progress").hidden = true;
    say(e.message);
  }
}

function setup() {
  $("file").addEventListener("change", () => {
    if ($("file").files.length) upload($("file").files[0]);
    $("file").value = "";
  });
  $("astronaut").addEventListener("click", () => addPhoto(() => call("POST", "/api/samples/astronaut")));
  $("generated").addEventListener("click", () => addPhoto(() => call("POST", "/api/samples/generated")));
  $("attributes").addEventListener("change", updateButtons);
  $("delta-range").addEventListener("input", () => {
    $("delta").value = $("delta-value").textContent = $("delta-range").value;
  });
  $("delta").addEventListener("input", () => {
    $("delta-range").value = $("delta").value;
    $("delta-value").textContent = $("delta").value;
  });
  $("edit").addEventListener("click", edit);
  $("cancel").addEventListener("click", async () => {
    try {
      await call("POST", `/api/jobs/${state.job.id}/cancel`);
    } catch (e) {
      say(e.message);
    }
  });
  $("toggle").addEventListener("click", () => {
    stopSweep();
    const before = $("toggle").getAttribute("aria-pressed") !== "true";
    $("toggle").setAttribute("aria-pressed", String(before));
    $("toggle").textContent = before ? "Show after" : "Show before";
    $("result").src = before ? state.photo.url : $("result").dataset.after;
    $("result-label").textContent = before ? "Before (the input)" : $("result-label").dataset.after;
  });
  $("play").addEventListener("click", () => {
    if (state.sweep) {
      stopSweep();
    } else if (state.job && state.job.outputs.sweep) {
      playSweep(state.job.outputs.sweep);
    }
  });
  loadInfo().catch((e) => say(e.message));
}

setup();
