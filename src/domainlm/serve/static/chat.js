// The chat page: plain JS, no build step. Talks to the same OpenAI-compatible API as any client.
"use strict";

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
// A key in the URL fragment (#key=...) is never sent to the server; keep it in this browser only.
const fragmentKey = new URLSearchParams(location.hash.slice(1)).get("key");
if (fragmentKey) { localStorage.setItem("domainlm-key", fragmentKey); history.replaceState(null, "", location.pathname); }
keyInput.value = localStorage.getItem("domainlm-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("domainlm-key", keyInput.value.trim()); loadModel(); });

const history_ = [];  // the conversation sent with every request
let modelId = null;

function headers() {
  return { "Content-Type": "application/json", "Authorization": "Bearer " + keyInput.value.trim() };
}

async function api(path, body) {
  const res = await fetch(path, { method: body ? "POST" : "GET", headers: headers(), body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText);
  return data;
}

async function loadModel() {
  if (!keyInput.value.trim()) { $("model-name").textContent = "enter an API key"; return; }
  try {
    const models = await api("/v1/models");
    modelId = models.data[0].id;
    $("model-name").textContent = modelId;
  } catch (e) { $("model-name").textContent = "⚠ " + e.message; }
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const body = document.createElement("div");
  body.className = "content";
  body.textContent = text;
  div.appendChild(body);
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

function showCitations(div, citations) {
  if (!citations || !citations.length) return;
  const box = document.createElement("details");
  box.className = "citations";
  box.open = true;
  const summary = document.createElement("summary");
  summary.textContent = `引用 / Sources (${citations.length})`;
  box.appendChild(summary);
  const list = document.createElement("ol");
  for (const c of citations) {
    const li = document.createElement("li");
    const item = document.createElement("details");
    const head = document.createElement("summary");
    head.textContent = c.title || c.source || c.doc_id || c.id || "source";
    const text = document.createElement("div");
    text.className = "citation-text";
    text.textContent = c.text || c.snippet || JSON.stringify(c);
    item.appendChild(head); item.appendChild(text); li.appendChild(item); list.appendChild(li);
  }
  box.appendChild(list);
  div.appendChild(box);
}

function feedbackControls(div, responseId) {
  const bar = document.createElement("div");
  bar.className = "actions";
  const status = document.createElement("span");
  status.className = "muted feedback-status";
  const send = async (payload, label) => {
    try {
      await api("/v1/feedback", { response_id: responseId, ...payload });
      status.textContent = "已记录 / saved: " + label;
    } catch (e) { status.textContent = "⚠ " + e.message; }
  };
  const up = document.createElement("button"); up.textContent = "👍"; up.title = "good answer"; up.className = "thumb-up";
  const down = document.createElement("button"); down.textContent = "👎"; down.title = "bad answer"; down.className = "thumb-down";
  const better = document.createElement("button"); better.textContent = "建议更好的回答 / Suggest a better answer"; better.className = "suggest";
  up.onclick = () => send({ rating: "up" }, "👍");
  down.onclick = () => send({ rating: "down" }, "👎");
  better.onclick = () => {
    if (div.querySelector(".better")) return;
    const form = document.createElement("div");
    form.className = "better";
    const area = document.createElement("textarea"); area.rows = 3;
    const ok = document.createElement("button"); ok.textContent = "提交 / Submit";
    ok.onclick = () => { if (area.value.trim()) send({ rating: "down", correction: area.value.trim() }, "correction").then(() => form.remove()); };
    form.appendChild(area); form.appendChild(ok); div.appendChild(form);
  };
  bar.append(up, down, better, status);
  div.appendChild(bar);
}

async function ask(question) {
  history_.push({ role: "user", content: question });
  bubble("user", question);
  const div = bubble("assistant", "");
  const body = div.querySelector(".content");
  let text = "", id = null, citations = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ model: modelId, messages: history_, stream: true, kb: $("use-kb").checked || undefined }),
    });
    if (!res.ok) { const e = await res.json().catch(() => ({})); throw new Error((e.error && e.error.message) || res.statusText); }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {  // one SSE event per blank-line-terminated block
        const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const msg = JSON.parse(data);
        if (msg.error) throw new Error(msg.error.message);
        id = msg.id;
        if (msg.citations) citations = msg.citations;
        const delta = (msg.choices[0] || {}).delta || {};
        if (delta.content) { text += delta.content; body.textContent = text; }
      }
    }
  } catch (e) {
    div.className = "msg error"; body.textContent = "⚠ " + e.message; history_.pop(); return;
  }
  history_.push({ role: "assistant", content: text });
  div.dataset.responseId = id;
  showCitations(div, citations);
  feedbackControls(div, id);
}

$("chat-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("prompt").value.trim();
  if (!q) return;
  $("prompt").value = "";
  ask(q);
});
$("prompt").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("chat-form").requestSubmit(); }
});

$("file-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const question = $("file-question").value.trim();
  bubble("user", `📄 ${file.name}` + (question ? `\n${question}` : "\n(摘要 / summary)"));
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  const div = bubble("assistant", "…");
  try {
    const out = await api("/v1/chatfile", { filename: file.name, content_base64: btoa(binary), question: question || null });
    div.querySelector(".content").textContent = out.answer || out.summary || "";
    showCitations(div, out.citations);
  } catch (e) { div.className = "msg error"; div.querySelector(".content").textContent = "⚠ " + e.message; }
});

// A server started with --kb answers from its knowledge base by default (/health needs no key).
async function syncKbSwitch() {
  try {
    const res = await fetch("/health");
    if ((await res.json()).kb) $("use-kb").checked = true;
  } catch (e) { /* the switch stays off: plain answers still work */ }
}

syncKbSwitch();
loadModel();
