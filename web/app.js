// app.js: the live page of specreason-server. Sends the prompt to /v1/chat/completions with
// stream: true and the SpecReason knobs, reads the server-sent events and shows each adopted step
// marked by its author (the `specreason` object the server adds to each chunk), the answer apart,
// and live figures. Model and user text is only ever inserted with textContent.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const KNOBS = ["mode", "threshold", "first_n_base", "score_method", "temperature", "seed", "max_tokens",
    "spec_decode"];
  const LABEL = {
    "small": "small \u2713 accepted",
    "base-reject": "base \u21bb after rejection",
    "base-forced": "base (forced)",
    "small-only": "small (alone)",
  };
  let model = null;     // id from /v1/models
  let ctrl = null;      // AbortController of the running request
  let timer = null;
  let run = null;       // figures of the running request

  const state = (s) => { document.body.dataset.state = s; };
  const fmtMs = (ms) => !isFinite(ms) ? "\u2013" : ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms.toFixed(0) + " ms";
  const fmtScore = (v) => (typeof v === "number" && isFinite(v)) ? String(Math.round(v * 100) / 100) : null;
  const authorClass = (a) => String(a || "unmarked").toLowerCase().replace(/[^a-z-]/g, "-");

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function showError(msg) {
    const box = $("error");
    box.textContent = msg;
    box.hidden = false;
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("api_key").value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  // The error message of a failed response: OpenAI-style {"error": {"message"}} or the body.
  async function errorOf(res) {
    let body = "";
    try { body = await res.text(); } catch (e) { /* keep the status alone */ }
    let msg = body;
    try {
      const j = JSON.parse(body);
      if (j && j.error) msg = typeof j.error === "string" ? j.error : (j.error.message || body);
    } catch (e) { /* not JSON */ }
    return "HTTP " + res.status + (res.statusText ? " " + res.statusText : "") + (msg ? ": " + msg : "");
  }

  async function probe() {
    const s = $("server");
    try {
      const res = await fetch("v1/models", { headers: headers() });
      if (!res.ok) { s.textContent = await errorOf(res); return; }
      const j = await res.json();
      model = j && j.data && j.data.length ? j.data[0].id : null;
      s.textContent = model ? "model " + model : "no model listed";
      s.title = j && j.data ? j.data.map((m) => m.id).join(", ") : "";
    } catch (e) {
      s.textContent = "cannot reach the server: " + e.message;
    }
  }

  function requestBody(prompt) {
    const b = {
      messages: [{ role: "user", content: prompt }],
      stream: true,
      stream_options: { include_usage: true },
      mode: $("mode").value,
      threshold: Number($("threshold").value),
      first_n_base: Number($("first_n_base").value),
      score_method: $("score_method").value,
      temperature: Number($("temperature").value),
      seed: Number($("seed").value),
      spec_decode: $("spec_decode").checked,
    };
    if (model) b.model = model;
    const mt = $("max_tokens").value.trim();
    if (mt) b.max_tokens = Number(mt);
    return b;
  }

  // ---------------------------------------------------------------- figures
  function newRun() {
    return {
      t0: performance.now(), steps: 0, by: {}, judged: 0, accepted: 0, tokens: 0,
      tDraft: 0, tJudge: 0, tBase: 0, tOther: NaN, total: NaN, final: null, speedup: null,
    };
  }

  function findSpeedup(o, depth) {
    if (!o || typeof o !== "object" || depth > 3) return null;
    for (const k of Object.keys(o)) {
      const v = o[k];
      if (/speedup/i.test(k) && typeof v === "number" && isFinite(v) && v > 0) return { key: k, value: v };
    }
    for (const k of Object.keys(o)) {
      const f = findSpeedup(o[k], depth + 1);
      if (f) return f;
    }
    return null;
  }

  function drawFigures() {
    if (!run) return;
    const elapsed = isFinite(run.total) ? run.total : performance.now() - run.t0;
    const st = run.final;
    const acc = st && typeof st.acceptance === "number" && st.judged > 0 ? st.acceptance
      : run.judged ? run.accepted / run.judged : NaN;
    $("fig-acceptance").textContent = isFinite(acc)
      ? (100 * acc).toFixed(0) + "% (" + run.accepted + "/" + run.judged + ")" : "\u2013";
    const parts = [];
    for (const a of ["small", "base-reject", "base-forced", "small-only", "unmarked"])
      if (run.by[a]) parts.push(run.by[a] + " " + (a === "base-reject" ? "rewritten" : a === "base-forced" ? "forced" : a));
    const fs = $("fig-steps");
    fs.replaceChildren(run.steps ? String(run.steps) : "\u2013");
    if (parts.length) fs.append(el("span", "sub", parts.join(", ")));
    const tps = st && typeof st.tokens_per_s === "number" ? st.tokens_per_s
      : elapsed > 0 && run.tokens ? run.tokens / (elapsed / 1000) : NaN;
    $("fig-tps").textContent = isFinite(tps) ? tps.toFixed(1) : "\u2013";
    $("fig-elapsed").textContent = fmtMs(elapsed);
    $("fig-speedup").textContent = run.speedup ? run.speedup.value.toFixed(2) + "\u00d7" : "\u2013";
    $("fig-speedup").title = run.speedup ? "reported by the server as " + run.speedup.key : "not reported by the server";
    const other = isFinite(run.tOther) ? run.tOther : Math.max(0, elapsed - run.tDraft - run.tJudge - run.tBase);
    const sum = run.tDraft + run.tJudge + run.tBase + other;
    const seg = [["draft", run.tDraft], ["judge", run.tJudge], ["base", run.tBase], ["other", other]];
    for (const [name, v] of seg) {
      $("seg-" + name).style.width = sum > 0 ? (100 * v / sum).toFixed(2) + "%" : "0";
      $("t-" + name).textContent = fmtMs(v);
    }
    $("split-bar").setAttribute("aria-label", "time split: " + seg.map(([n, v]) => n + " " + fmtMs(v)).join(", "));
  }

  // ---------------------------------------------------------------- output
  function trimStep(t) { return String(t).replace(/^\n+/, "").replace(/\s+$/, ""); }

  let pending = null;   // a step being received without metadata

  function addStep(text, m) {
    pending = null;
    const a = authorClass(m.author);
    const li = el("li", "step a-" + a);
    li.dataset.author = a;
    li.dataset.step = String(m.step);
    const mark = el("span", "mark", LABEL[a] || a);
    const sc = fmtScore(m.score);
    if (sc !== null && a === "small") mark.append(" ", el("span", "score", sc));
    li.append(mark);
    let note = " step " + (Number(m.step) + 1);
    if (typeof m.tokens === "number") note += ", " + m.tokens + " tokens";
    li.append(el("span", "note muted", note));
    li.append(el("p", "text", trimStep(text || "")));
    if (typeof m.rejected_draft === "string") {
      const d = el("details");
      const ds = fmtScore(m.draft_score !== undefined ? m.draft_score : m.score);
      d.append(el("summary", null, "rejected draft" + (ds !== null ? " (judge score " + ds + ")" : "")));
      d.append(el("p", "text", trimStep(m.rejected_draft)));
      li.append(d);
    }
    $("steps").append(li);
    run.steps++;
    run.by[a] = (run.by[a] || 0) + 1;
    if (a === "small" || a === "base-reject") {
      run.judged++;
      if (a === "small") run.accepted++;
    }
    if (typeof m.tokens === "number") run.tokens += m.tokens;
    if (typeof m.t_draft_ms === "number") run.tDraft += m.t_draft_ms;
    if (typeof m.t_judge_ms === "number") run.tJudge += m.t_judge_ms;
    if (typeof m.t_base_ms === "number") run.tBase += m.t_base_ms;
    drawFigures();
  }

  function addUnmarked(text) {
    if (!pending) {
      pending = el("li", "step a-unmarked");
      pending.dataset.author = "unmarked";
      pending.append(el("span", "mark", "no author mark"), el("p", "text", ""));
      $("steps").append(pending);
      run.steps++;
      run.by.unmarked = (run.by.unmarked || 0) + 1;
    }
    const p = pending.querySelector(".text");
    p.textContent = trimStep(p.textContent + text);
  }

  function addAnswer(text, m) {
    pending = null;
    const box = $("answer");
    box.hidden = false;
    const t = $("answer-text");
    t.textContent = (t.textContent + text).replace(/^\s+/, "");
    if (m && typeof m.tokens === "number") run.tokens += m.tokens;
  }

  // The final chunk's `specreason` object: the run's statistics (time_ms, judged, acceptance,
  // steps_by_author, tokens_per_s, and a speedup estimate when the controller reports one).
  function onFinal(m) {
    const num = (v) => typeof v === "number" && isFinite(v);
    const t = m.time_ms || {};
    run.final = m;
    if (num(t.small)) run.tDraft = t.small;
    if (num(t.judge)) run.tJudge = t.judge;
    if (num(t.base)) run.tBase = t.base;
    if (num(t.total)) {
      run.total = t.total;
      run.tOther = Math.max(0, t.total - run.tDraft - run.tJudge - run.tBase);
    }
    if (num(m.judged)) run.judged = m.judged;
    if (m.steps_by_author && num(m.steps_by_author.small)) run.accepted = m.steps_by_author.small;
    run.speedup = findSpeedup(m, 0);
    drawFigures();
  }

  // One chat.completion.chunk.
  function onChunk(c) {
    if (c.error) throw new Error(typeof c.error === "string" ? c.error : c.error.message || JSON.stringify(c.error));
    const ch = c.choices && c.choices[0];
    const d = (ch && ch.delta) || {};
    const m = c.specreason && typeof c.specreason === "object" ? c.specreason : null;
    const isStep = m && typeof m.step === "number" && m.author !== "answer";
    if (isStep) addStep(d.reasoning_content || "", m);
    else if (typeof d.reasoning_content === "string" && d.reasoning_content) addUnmarked(d.reasoning_content);
    if (typeof d.content === "string" && d.content) addAnswer(d.content, m && !isStep ? m : null);
    if (m && ch && ch.finish_reason) onFinal(m);
    if (ch && ch.finish_reason) $("finish").textContent = "finish reason: " + ch.finish_reason +
      (m && m.stop ? " (stop: " + m.stop + ")" : "");
    if (c.usage && typeof c.usage.completion_tokens === "number") {
      $("finish").textContent += ($("finish").textContent ? "; " : "") + c.usage.completion_tokens +
        " completion tokens, " + c.usage.prompt_tokens + " prompt tokens";
    }
  }

  // Reads server-sent events: "data:" lines, an event ends at a blank line.
  async function readStream(res) {
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "", data = [], done = false;
    const dispatch = () => {
      if (!data.length) return;
      const payload = data.join("\n");
      data = [];
      if (payload.trim() === "[DONE]") { done = true; return; }
      onChunk(JSON.parse(payload));
    };
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      buf += dec.decode(r.value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, "");
        buf = buf.slice(i + 1);
        if (line === "") dispatch();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
    }
    if (buf.startsWith("data:")) data.push(buf.slice(5).replace(/^ /, ""));
    dispatch();
    return done;
  }

  async function submit(ev) {
    if (ev) ev.preventDefault();
    if (ctrl) return;
    const prompt = $("prompt").value;
    if (!prompt.trim()) { showError("Write a problem first."); $("prompt").focus(); return; }
    $("error").hidden = true;
    $("output").hidden = false;
    $("echo").textContent = prompt;
    $("steps").replaceChildren();
    $("answer").hidden = true;
    $("answer-text").textContent = "";
    $("finish").textContent = "";
    pending = null;
    run = newRun();
    drawFigures();
    ctrl = new AbortController();
    $("run").disabled = true;
    $("stop").disabled = false;
    state("running");
    timer = setInterval(drawFigures, 250);
    let end = "done";
    try {
      const res = await fetch("v1/chat/completions", {
        method: "POST", headers: headers(), body: JSON.stringify(requestBody(prompt)), signal: ctrl.signal,
      });
      if (!res.ok) throw new Error(await errorOf(res));
      const complete = await readStream(res);
      if (!complete) $("finish").textContent += ($("finish").textContent ? "; " : "") + "the stream ended early";
    } catch (e) {
      if (e.name === "AbortError") {
        end = "stopped";
        $("finish").textContent = "stopped";
      } else {
        end = "error";
        showError(e.message || String(e));
        if (!run.steps) $("output").hidden = true; /* refused before anything streamed */
      }
    } finally {
      clearInterval(timer);
      if (run && !isFinite(run.total)) run.total = performance.now() - run.t0;
      drawFigures();
      ctrl = null;
      $("run").disabled = false;
      $("stop").disabled = true;
      state(end);
    }
  }

  function stop() { if (ctrl) ctrl.abort(); }

  // Knobs and prompt from the URL (?prompt=...&threshold=5&run=1), so a run can be linked.
  function fromQuery() {
    const q = new URLSearchParams(location.search);
    if (q.has("prompt")) $("prompt").value = q.get("prompt");
    for (const k of KNOBS) {
      if (!q.has(k)) continue;
      const e = $(k);
      if (e.type === "checkbox") e.checked = /^(1|true|on|yes)$/i.test(q.get(k));
      else e.value = q.get(k);
    }
    return q.get("run") === "1";
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("ask").addEventListener("submit", submit);
    $("stop").addEventListener("click", stop);
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e);
    });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") stop(); });
    $("api_key").addEventListener("change", probe); /* a server with --api-key lists its model only then */
    const auto = fromQuery();
    await probe();
    if (auto) submit();
    else $("prompt").focus();
  });
})();
