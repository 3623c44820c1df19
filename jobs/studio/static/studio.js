// The studio's only script: the running-build page polls its state; the chat page streams answers (and the
// cited passages of an answer with retrieval) from serve's OpenAI-compatible server.
"use strict";
function el(id) { return document.getElementById(id); }
function clock(s) {
  if (s === null || s === undefined) return "?";
  s = Math.round(s); const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(r).padStart(2, "0");
}
async function pollRunning(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) return;
  const s = await r.json();
  el("state").textContent = s.state + (s.status ? " (" + s.status + ")" : "");
  el("stage").textContent = s.stage ? "stage " + s.index + " of " + s.of + ": " + s.stage : "starting";
  el("elapsed").textContent = clock(s.elapsed_s);
  el("remaining").textContent = s.remaining_s === null ? "no estimate yet (no earlier build to go by)" : "about " + clock(s.remaining_s);
  const t = s.train, y = s.synthesis;
  el("step").textContent = t ? "step " + t.step + " of " + t.steps + ", loss " + t.loss.toFixed(4) +
    ", lr " + t.lr.toExponential(2) + ", " + Math.round(t.tokens_per_s) + " tokens/s, about " + clock(t.remaining_s) + " left in train" : "–";
  el("synthesis").textContent = y ? y.done + " of " + y.total + " writer replies, about " + clock(y.remaining_s) + " left" : "–";
  el("loss").innerHTML = s.loss_svg;
  const log = el("log");
  log.textContent = s.log.join("\n");
  log.scrollTop = log.scrollHeight;  // the tail is what matters
  if (s.state === "running") setTimeout(() => pollRunning(url), 1000);
}
const BASE = "base";  // serve's model id of the base without an adapter (jobs/serve/protocol.py BASE_MODEL)
function option(tag) { return el("model-a").querySelector("option[value='" + CSS.escape(tag) + "']"); }
function plan() {
  // The builds to load (base is asked as the first of them) and, per side, its model and the build it is asked as.
  const models = [el("model-a").value, el("model-b").value].filter(Boolean);
  const tags = [...new Set(models.filter(m => m !== BASE))];
  if (!tags.length && el("chat-form").dataset.baseOf) tags.push(el("chat-form").dataset.baseOf);
  return {tags: tags, sides: models.map(m => ({model: m, build: m === BASE ? tags[0] : m}))};
}
function indexed(tag) { const o = tag && option(tag); return Boolean(o && o.dataset.index); }
function showSwitch() {
  const sides = plan().sides.filter(s => indexed(s.build));
  el("retrieval-switch").hidden = !sides.length;
  el("retrieval").checked = sides.some(s => option(s.build).dataset.retrieval);  // the spec's retrieval.default
}
function showSources(list, sources) {
  list.replaceChildren();
  list.hidden = !sources;
  for (const s of sources || []) {
    const li = document.createElement("li");
    li.textContent = "[" + s.n + "] " + s.file + (s.section ? " › " + s.section : "") + (s.page ? ", p. " + s.page : "") + "  (" +
      s.paragraph_ids.join(", ") + ")";
    list.append(li);
  }
  if (sources && !sources.length) list.append(Object.assign(document.createElement("li"), {textContent: "no passage fitted"}));
}
async function streamInto(side, target, list, question, temperature, retrieval) {
  target.textContent = ""; target.dataset.chunks = "0"; delete target.dataset.done; showSources(list, null);
  const body = {model: side.model, stream: true, temperature: temperature, seed: 0,
                messages: [{role: "user", content: question}]};
  if (retrieval !== null) body.retrieval = retrieval;  // only for a build with an index (serve refuses it otherwise)
  const r = await fetch("/v1/chat/completions", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify(body)});
  if (!r.ok) { target.textContent = "error: " + (await r.text()); return; }
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim(); buf = buf.slice(i + 1);
      if (!line.startsWith("data:")) continue;
      const payload = line.slice(5).trim();
      if (payload === "[DONE]") { target.dataset.done = "1"; return; }
      const chunk = JSON.parse(payload);
      if (chunk.error) { target.textContent += "\nerror: " + chunk.error.message; return; }
      const choice = chunk.choices && chunk.choices[0];
      if (choice && choice.sources) showSources(list, choice.sources);  // beside the first delta
      const delta = choice && choice.delta.content;
      if (delta) { target.textContent += delta; target.dataset.chunks = String(Number(target.dataset.chunks) + 1); }
    }
  }
}
async function ask(event) {
  event.preventDefault();
  const {tags, sides} = plan(), question = el("question").value;
  const temperature = Number(el("temperature").value) || 0;
  if (!tags.length) { el("chat-status").textContent = "error: no build to chat with in this store (make build VERSION=smoke)"; return; }
  el("chat-status").textContent = "loading " + tags.join(", ") + " ...";
  const r = await fetch("/chat/load", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({tags: tags, csrf: el("csrf").value})});
  const info = await r.json();
  if (!r.ok) { el("chat-status").textContent = "error: " + info.error; return; }
  const on = el("retrieval").checked;
  const label = s => (s.model === BASE ? "base (asked as " + s.build + ")" : s.model) +
    (indexed(s.build) ? (on ? " · retrieval on" : " · retrieval off") : "");
  el("chat-status").textContent = "answering with " + sides.map(label).join(" and ");
  el("label-a").textContent = label(sides[0]); el("label-b").textContent = sides[1] ? label(sides[1]) : "";
  el("side-b").hidden = sides.length < 2;
  await Promise.all(sides.map((s, k) => streamInto(s, el("answer-" + "ab"[k]), el("sources-" + "ab"[k]), question,
                                                   temperature, indexed(s.build) ? on : null)));
  el("chat-status").textContent = "done";
}
document.addEventListener("DOMContentLoaded", () => {
  const running = document.querySelector("[data-poll]");
  if (running) pollRunning(running.dataset.poll);
  const form = el("chat-form");
  if (form) {
    form.addEventListener("submit", ask);
    for (const id of ["model-a", "model-b"]) el(id).addEventListener("change", showSwitch);
    showSwitch();
  }
});
