// The studio's only script: the running-build page polls its state; the chat page streams answers.
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
async function streamInto(target, model, question, temperature) {
  target.textContent = ""; target.dataset.chunks = "0"; delete target.dataset.done;
  const r = await fetch("/v1/chat/completions", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({model: model, stream: true, temperature: temperature, seed: 0,
                         messages: [{role: "user", content: question}]})});
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
      const delta = chunk.choices && chunk.choices[0].delta.content;
      if (delta) { target.textContent += delta; target.dataset.chunks = String(Number(target.dataset.chunks) + 1); }
    }
  }
}
async function ask(event) {
  event.preventDefault();
  const models = [el("model-a").value, el("model-b").value].filter(Boolean), question = el("question").value;
  const temperature = Number(el("temperature").value) || 0;
  el("chat-status").textContent = "loading " + models.join(", ") + " ...";
  const r = await fetch("/chat/load", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({tags: models, csrf: el("csrf").value})});
  const info = await r.json();
  if (!r.ok) { el("chat-status").textContent = "error: " + info.error; return; }
  el("chat-status").textContent = "answering with " + models.join(" and ");
  el("label-a").textContent = models[0]; el("label-b").textContent = models[1] || "";
  el("side-b").hidden = models.length < 2;
  await Promise.all([streamInto(el("answer-a"), models[0], question, temperature),
                     models[1] ? streamInto(el("answer-b"), models[1], question, temperature) : null]);
  el("chat-status").textContent = "done";
}
document.addEventListener("DOMContentLoaded", () => {
  const running = document.querySelector("[data-poll]");
  if (running) pollRunning(running.dataset.poll);
  const form = el("chat-form");
  if (form) form.addEventListener("submit", ask);
});
