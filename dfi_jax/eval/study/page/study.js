// The 2AFC rating page: shows window.STUDY.trials (from trials.js) one at a time, records each
// choice and its response time, and exports the answers as CSV or JSON. No network access:
// it runs from file:// as well as from any static server.
(function () {
  "use strict";

  const study = window.STUDY;
  const $ = (id) => document.getElementById(id);
  const CSV_COLUMNS = ["study_id", "shard_index", "rater", "order", "trial_id", "attribute",
                       "choice", "left", "right", "rt_ms", "input", "time"];

  function fail(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
  }

  if (!study || !Array.isArray(study.trials)) {
    fail("trials.js is missing or broken: rebuild the study with experiments.study_stimuli.");
    return;
  }
  const trials = study.trials;
  const state = { rater: "", started: null, finished: null, index: 0, responses: [],
                  shownAt: null, ready: false };

  // Progress survives a reload (same study, shard and rater) where the browser allows storage.
  function storageKey() {
    return `dfi-study:${study.study_id}:${study.shard_index}:${state.rater}`;
  }
  function save() {
    try {
      localStorage.setItem(storageKey(), JSON.stringify({
        started: state.started, index: state.index, responses: state.responses }));
    } catch (e) { /* storage disabled: progress lives in this tab only */ }
  }
  function restore() {
    try {
      const saved = JSON.parse(localStorage.getItem(storageKey()) || "null");
      if (saved && Array.isArray(saved.responses) && saved.index === saved.responses.length) {
        state.started = saved.started;
        state.index = saved.index;
        state.responses = saved.responses;
      }
    } catch (e) { /* nothing saved, or unreadable: start afresh */ }
  }

  function loaded(img, src) {
    return new Promise((resolve, reject) => {
      img.removeAttribute("src");  // so that the same src as the last trial loads (and fires) again
      img.onload = () => resolve();
      img.onerror = () => reject(new Error(`cannot load image ${src}`));
      img.src = src;
    });
  }

  const leftImg = $("left").querySelector("img");
  const rightImg = $("right").querySelector("img");

  function setEnabled(on) {
    $("left").disabled = !on;
    $("right").disabled = !on;
  }

  function showTrial() {
    if (state.index >= trials.length) {
      finish();
      return;
    }
    const t = trials[state.index];
    state.ready = false;
    setEnabled(false);
    $("progress-text").textContent = `${state.index + 1} of ${trials.length}`;
    $("progress").max = trials.length;
    $("progress").value = state.index;
    $("prompt").textContent = t.prompt;
    const index = state.index;
    Promise.all([loaded(leftImg, t.left), loaded(rightImg, t.right)]).then(() => {
      if (index !== state.index) return;
      // Time from the first frame that shows both images.
      requestAnimationFrame(() => {
        state.shownAt = performance.now();
        state.ready = true;
        setEnabled(true);
      });
      const next = trials[index + 1];
      if (next) { new Image().src = next.left; new Image().src = next.right; }
    }, (err) => fail(`${err.message} (trial ${t.id}); please report this.`));
  }

  function choose(side, input) {
    if (!state.ready) return;
    state.ready = false;
    setEnabled(false);
    const t = trials[state.index];
    state.responses.push({
      study_id: study.study_id, shard_index: study.shard_index, rater: state.rater,
      order: state.index, trial_id: t.id, attribute: t.attribute, choice: side,
      left: t.left, right: t.right,
      rt_ms: Math.round((performance.now() - state.shownAt) * 10) / 10,
      input: input, time: new Date().toISOString() });
    state.index += 1;
    save();
    showTrial();
  }

  function finish() {
    state.finished = state.finished || new Date().toISOString();
    $("trial").hidden = true;
    $("done").hidden = false;
    $("summary").textContent = `You answered ${state.responses.length} of ${trials.length} ` +
      `comparisons (rater ID ${state.rater}).`;
  }

  function responsesObject() {
    return { study_id: study.study_id, shard_index: study.shard_index,
             num_shards: study.num_shards, rater: state.rater, num_trials: trials.length,
             started: state.started, finished: state.finished,
             user_agent: navigator.userAgent, responses: state.responses };
  }

  function csvField(value) {
    const s = value === null || value === undefined ? "" : String(value);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function responsesCSV() {
    const lines = [CSV_COLUMNS.join(",")];
    for (const r of state.responses) lines.push(CSV_COLUMNS.map((c) => csvField(r[c])).join(","));
    return lines.join("\n") + "\n";
  }

  function download(text, ext, mime) {
    const safe = (state.rater || "anonymous").replace(/[^A-Za-z0-9_.-]/g, "_");
    const name = `responses_${study.study_id}_s${study.shard_index}_${safe}.${ext}`;
    const url = URL.createObjectURL(new Blob([text], { type: mime }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // For automation and for a rater whose download is blocked: the JSON export as a string.
  window.exportResponses = () => JSON.stringify(responsesObject(), null, 1);
  window.exportResponsesCSV = responsesCSV;

  function start() {
    const typed = $("rater").value.trim();
    state.rater = typed || `anon-${Math.random().toString(36).slice(2, 10)}`;
    restore();
    state.started = state.started || new Date().toISOString();
    $("intro").hidden = true;
    $("trial").hidden = false;
    showTrial();
  }

  const params = new URLSearchParams(window.location.search);
  $("rater").value = params.get("rater") || params.get("workerId") || "";
  const minutes = Math.max(1, Math.round(trials.length * 4 / 60));
  $("count").textContent = `${trials.length} comparisons, about ${minutes} ` +
    (minutes === 1 ? "minute." : "minutes.");
  $("start").addEventListener("click", start);
  $("rater").addEventListener("keydown", (e) => { if (e.key === "Enter") start(); });
  for (const side of ["left", "right"]) {
    $(side).addEventListener("click", () => choose(side, "click"));
  }
  document.addEventListener("keydown", (e) => {
    if ($("trial").hidden || e.repeat) return;
    if (e.key === "ArrowLeft") { e.preventDefault(); choose("left", "key"); }
    if (e.key === "ArrowRight") { e.preventDefault(); choose("right", "key"); }
  });
  $("save-partial").addEventListener("click", () => download(responsesCSV(), "csv", "text/csv"));
  $("export-csv").addEventListener("click", () => download(responsesCSV(), "csv", "text/csv"));
  $("export-json").addEventListener("click",
    () => download(window.exportResponses(), "json", "application/json"));
})();
