// GET /: a small chat page, self-contained (inline CSS and JS, no external resources), that streams
// replies from /v1/chat/completions with the main sampling settings and a stop button.
#include "mlxgp/server.h"

namespace mlxgp::server {

const std::string& chat_page_html() {
  static const std::string kPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlxgp chat</title>
<style>
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; display: flex; flex-direction: column; height: 100vh;
         background: #f6f6f4; color: #1d1d1b; }
  header { padding: 8px 14px; background: #24292f; color: #fff; display: flex; gap: 12px; align-items: baseline; }
  header small { opacity: .7; }
  #log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 10px; }
  .msg { max-width: 80ch; padding: 8px 12px; border-radius: 10px; white-space: pre-wrap; word-wrap: break-word; }
  .user { align-self: flex-end; background: #d7e8ff; }
  .assistant { align-self: flex-start; background: #fff; border: 1px solid #ddd; min-height: 2.2em; }
  .assistant.streaming::after { content: "\258D"; opacity: .5; }
  .error { border-color: #d33; color: #a00; }
  details { padding: 4px 14px; background: #eee; }
  details label { display: inline-flex; gap: 4px; align-items: center; margin: 4px 12px 4px 0; }
  details input[type=number] { width: 6em; }
  #system { width: 40ch; }
  form { display: flex; gap: 8px; padding: 10px 14px; background: #fff; border-top: 1px solid #ddd; }
  #input { flex: 1; font: inherit; resize: vertical; }
  button { font: inherit; padding: 4px 14px; }
</style>
</head>
<body>
<header><b>mlxgp chat</b><small id="model"></small></header>
<main id="log" aria-live="polite"></main>
<details id="settings">
  <summary>Settings</summary>
  <label>System <input id="system" type="text" placeholder="optional system prompt"></label>
  <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.05" value="0.7"></label>
  <label>Top p <input id="top_p" type="number" min="0.01" max="1" step="0.05" value="1"></label>
  <label>Top k <input id="top_k" type="number" min="-1" step="1" value="-1"></label>
  <label>Max tokens <input id="max_tokens" type="number" min="1" step="1" value="512"></label>
  <label>Seed <input id="seed" type="number" step="1" placeholder="random"></label>
  <label>API key <input id="api_key" type="password" placeholder="if --api-key is set"></label>
  <button id="clear" type="button">Clear chat</button>
</details>
<form id="form">
  <textarea id="input" rows="2" placeholder="Message (Enter sends, Shift+Enter: new line)"></textarea>
  <button id="send" type="submit">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function bubble(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role;
  d.textContent = text;
  $("log").appendChild(d);
  d.scrollIntoView({block: "end"});
  return d;
}

function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
}

function number(id, integer) {
  const v = $(id).value.trim();
  if (v === "") return undefined;
  const x = integer ? parseInt(v, 10) : parseFloat(v);
  return Number.isFinite(x) ? x : undefined;
}

function requestBody() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  const body = {messages: messages.concat(history), stream: true};
  const fields = {temperature: false, top_p: false, top_k: true, max_tokens: true, seed: true};
  for (const [k, integer] of Object.entries(fields)) {
    const v = number(k, integer);
    if (v !== undefined) body[k] = v;
  }
  return body;
}

// Reads server-sent events ("data: {...}\n\n") and calls onData with each parsed chunk.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data !== "[DONE]") onData(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  history.push({role: "user", content: text});
  bubble("user", text);
  const out = bubble("assistant", "");
  out.classList.add("streaming");
  controller = new AbortController();
  busy(true);
  let reply = "";
  try {
    const res = await fetch("/v1/chat/completions", {method: "POST", headers: headers(),
                                                     body: JSON.stringify(requestBody()), signal: controller.signal});
    if (!res.ok) {
      const e = await res.json().catch(() => ({}));
      throw new Error(e.error ? e.error.message : res.status + " " + res.statusText);
    }
    await readEvents(res, (chunk) => {
      if (chunk.error) throw new Error(chunk.error.message);
      for (const c of chunk.choices || []) {
        if (c.delta && c.delta.content) {
          reply += c.delta.content;
          out.textContent = reply;
          out.scrollIntoView({block: "end"});
        }
        if (c.finish_reason) out.dataset.finish = c.finish_reason;
      }
    });
  } catch (e) {
    if (e.name === "AbortError") {
      out.dataset.finish = "stopped";
    } else {
      out.classList.add("error");
      out.textContent = (reply ? reply + "\n" : "") + "Error: " + e.message;
      out.dataset.finish = "error";
    }
  } finally {
    out.classList.remove("streaming");
    if (reply) history.push({role: "assistant", content: reply});
    else history.pop();  // nothing came back: the question is not part of the conversation
    controller = null;
    busy(false);
    $("input").focus();
  }
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("form").requestSubmit();
  }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("clear").addEventListener("click", () => {
  if (controller) controller.abort();
  history.length = 0;
  $("log").textContent = "";
});
fetch("/v1/models", {headers: headers()}).then((r) => r.ok ? r.json() : null).then((m) => {
  if (m && m.data && m.data[0]) $("model").textContent = m.data[0].id;
}).catch(() => {});
</script>
</body>
</html>
)HTML";
  return kPage;
}

}  // namespace mlxgp::server
