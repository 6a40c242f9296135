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

// ---------------------------------------------------------------------------------------------------
// Exam review (a reviewer's key; a server started with --kb KB --plugin exam): make an exam from the KB,
// then accept, fix or reject each item. The server re-checks a fix and stores accepted and fixed items as
// feedback (training data); its reasons for refusing a fix are shown under the item.
// ---------------------------------------------------------------------------------------------------
let examId = null;

async function examCall(path, body) {
  const res = await fetch(path, { method: body ? "POST" : "GET", headers: headers(), body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error((data.error && data.error.message) || res.statusText);
    err.problems = (data.error && data.error.problems) || [];
    throw err;
  }
  return data;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function field(name, label, value, rows) {
  const wrap = el("label", "fix-field");
  wrap.appendChild(el("span", "muted", label));
  const input = rows ? el("textarea") : el("input");
  input.name = name;
  if (rows) input.rows = rows;
  input.value = value;
  wrap.appendChild(input);
  return [wrap, input];
}

function showExam(exam) {
  examId = exam.id;
  $("exam-id").value = exam.id;
  $("exam-export-md").disabled = $("exam-export-docx").disabled = false;
  const r = exam.reviewed;
  $("exam-status").textContent = `${exam.id}: ${exam.items.length} 题 / items — ✓ ${r.accept} · ✎ ${r.fix} · ✗ ${r.reject} · ${r.open} open`
    + (exam.warnings.length ? " — ⚠ " + exam.warnings.join("; ") : "");
  const list = $("exam-items");
  list.textContent = "";
  for (const item of exam.items) list.appendChild(examItem(item));
}

function examItem(item) {
  const li = el("li", "exam-item");
  li.dataset.itemId = item.id;
  const shown = (item.review && item.review.item) || item;  // a fixed item shows as fixed
  li.appendChild(el("div", "exam-meta muted", `${item.type} · ${shown.level} (${shown.difficulty.toFixed(2)}) · ${item.id}`));
  li.appendChild(el("div", "exam-question", shown.question));
  if (shown.choices) {
    const choices = el("ol", "exam-choices");
    choices.type = "A";
    for (const c of shown.choices) choices.appendChild(el("li", c === shown.key ? "exam-key" : "", c));
    li.appendChild(choices);
  }
  li.appendChild(el("div", "exam-answer", `答案 / key: ${shown.type === "mcq" ? shown.answer + ". " : ""}${shown.key}`));
  if (shown.distractors.length) li.appendChild(el("div", "muted", "干扰项 / distractors: " + shown.distractors.join(" · ")));
  for (const p of shown.rubric) li.appendChild(el("div", "muted", `评分要点 / rubric: ${p.point} (${p.score})`));
  li.appendChild(el("div", "exam-passage", `出处 / source: ${shown.source.source} — “${shown.source.passage}”`));
  for (const p of item.problems) li.appendChild(el("div", "exam-problem", "⚠ " + p));
  const status = el("div", "exam-review muted");
  const error = el("div", "exam-error");
  if (item.review) {
    status.textContent = { accept: "✓ 已接受 / accepted", fix: "✎ 已修改 / fixed", reject: "✗ 已拒绝 / rejected" }[item.review.verdict]
      + ` (${item.review.reviewer})`;
    li.classList.add("reviewed-" + item.review.verdict);
    li.append(status, error);
    return li;
  }
  const bar = el("div", "actions");
  const accept = el("button", "exam-accept", "接受 / Accept");
  const fix = el("button", "exam-fix", "修改 / Fix");
  const reject = el("button", "exam-reject", "拒绝 / Reject");
  accept.type = fix.type = reject.type = "button";
  accept.onclick = () => review(item, { verdict: "accept" }, error);
  reject.onclick = () => review(item, { verdict: "reject" }, error);
  fix.onclick = () => { if (!li.querySelector(".exam-fix-form")) li.insertBefore(fixForm(item, error), error); };
  bar.append(accept, fix, reject);
  li.append(bar, status, error);
  return li;
}

function fixForm(item, error) {
  const form = el("div", "exam-fix-form");
  const [qWrap, question] = field("question", "题目 / question", item.question, 2);
  const [kWrap, key] = field("key", "答案 / key", item.key);
  const [pWrap, passage] = field("passage", "出处句 / passage (a sentence of the same chunk)", item.source.passage, 2);
  form.append(qWrap, kWrap);
  let distractors = null, rubric = null;
  if (item.type === "mcq") {
    const [dWrap, input] = field("distractors", "干扰项 / distractors (one a line)", item.distractors.join("\n"), 3);
    distractors = input; form.appendChild(dWrap);
  }
  if (item.type === "short") {
    const [rWrap, input] = field("rubric", "评分要点 / rubric (one a line: point | answer)", item.rubric.map((p) => `${p.point} | ${p.answer}`).join("\n"), 3);
    rubric = input; form.appendChild(rWrap);
  }
  form.appendChild(pWrap);
  const save = el("button", "exam-save", "提交修改 / Save fix");
  const cancel = el("button", "", "取消 / Cancel");
  save.type = cancel.type = "button";
  save.onclick = () => {
    // Only what the reviewer changed is sent: the server rebuilds the rest (options, letter, blank, span).
    const fixed = {};
    if (question.value.trim() !== item.question) fixed.question = question.value.trim();
    if (key.value.trim() !== item.key) fixed.key = key.value.trim();
    if (passage.value.trim() !== item.source.passage) fixed.passage = passage.value.trim();
    if (distractors) {
      const values = distractors.value.split("\n").map((v) => v.trim()).filter(Boolean);
      if (values.join("\n") !== item.distractors.join("\n")) fixed.distractors = values;
    }
    if (rubric) {
      const points = rubric.value.split("\n").map((v) => v.trim()).filter(Boolean).map((line) => {
        const cut = line.lastIndexOf("|");
        return cut < 0 ? { point: line, answer: line } : { point: line.slice(0, cut).trim(), answer: line.slice(cut + 1).trim() };
      });
      const before = item.rubric.map((p) => `${p.point} | ${p.answer}`).join("\n");
      if (points.map((p) => `${p.point} | ${p.answer}`).join("\n") !== before) {
        fixed.rubric = points.map((p) => {
          const old = item.rubric.find((o) => o.point === p.point || o.answer === p.answer);
          return { ...p, evidence: old ? old.evidence : null, score: old ? old.score : 1 };
        });
      }
    }
    review(item, { verdict: "fix", item: fixed }, error);
  };
  cancel.onclick = () => { form.remove(); error.textContent = ""; };
  const buttons = el("div", "actions");
  buttons.append(save, cancel);
  form.appendChild(buttons);
  return form;
}

async function review(item, body, error) {
  error.textContent = "";
  try {
    await examCall(`/v1/exams/${encodeURIComponent(examId)}/items/${encodeURIComponent(item.id)}/review`, body);
    showExam(await examCall(`/v1/exams/${encodeURIComponent(examId)}`));
  } catch (e) {
    // The server's reasons, one a line (an invalid fix is not stored: the item stays open).
    const lines = e.problems.length ? e.problems : [e.message];
    for (const line of lines) error.appendChild(el("div", "exam-problem", "⚠ " + line));
  }
}

async function exportExam(fmt) {
  try {
    const res = await fetch(`/v1/exams/${encodeURIComponent(examId)}/export?format=${fmt}`, { headers: headers() });
    if (!res.ok) { const e = await res.json().catch(() => ({})); throw new Error((e.error && e.error.message) || res.statusText); }
    const link = el("a");
    link.href = URL.createObjectURL(await res.blob());
    link.download = `${examId}.${fmt}`;
    document.body.appendChild(link); link.click(); link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) { $("exam-status").textContent = "⚠ " + e.message; }
}

$("exam-toggle").addEventListener("click", () => { $("exam-panel").hidden = !$("exam-panel").hidden; });
$("exam-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("exam-status").textContent = "出卷中 / making the exam…";
  const body = { n: Number($("exam-n").value) || 10, seed: Number($("exam-seed").value) || 0 };
  if ($("exam-query").value.trim()) body.query = $("exam-query").value.trim();
  try { showExam(await examCall("/v1/exams", body)); } catch (e) { $("exam-status").textContent = "⚠ " + e.message; }
});
$("exam-open").addEventListener("click", async () => {
  const id = $("exam-id").value.trim();
  if (!id) return;
  try { showExam(await examCall(`/v1/exams/${encodeURIComponent(id)}`)); } catch (e) { $("exam-status").textContent = "⚠ " + e.message; }
});
$("exam-export-md").addEventListener("click", () => exportExam("md"));
$("exam-export-docx").addEventListener("click", () => exportExam("docx"));

syncKbSwitch();
loadModel();
