// DOM helpers and renderers. Everything from a run is inserted as text (never innerHTML): run files are
// written by generated code.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || x === "") return "–";
  const n = Number(x);
  if (!Number.isFinite(n)) return String(x);
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(digits);
}

function fmtTime(t) {
  if (t === null || t === undefined || t === "") return "–";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (isNaN(d)) return String(t);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

function badge(text, cls) { return el("span", { class: `badge ${cls || ""}` }, text ?? "–"); }

function fileUrl(runId, rel) {
  return `/api/runs/${encodeURIComponent(runId)}/files/${rel.split("/").map(encodeURIComponent).join("/")}`;
}

// Budget: limits are `max_<name>`; the used amount is `used[<name>]` (hours may be reported as seconds).
function budgetGauges(budget, iteration) {
  const limits = (budget && budget.limits) || {};
  const used = (budget && budget.used) || {};
  const out = [];
  for (const [key, limit] of Object.entries(limits)) {
    const name = key.replace(/^max_/, "");
    let value = used[name];
    if (value === undefined && name === "hours") {
      const s = used.seconds ?? used.elapsed_s ?? used.wall_s;
      value = s === undefined ? undefined : s / 3600;
    }
    if (value === undefined && name === "iterations") value = used.iteration ?? iteration;
    const frac = limit ? Math.min(1, Number(value || 0) / Number(limit)) : 0;
    out.push({ name, used: value, limit, frac });
  }
  return out;
}

function gaugeNode(g) {
  const cls = g.frac >= 1 ? "fill full" : g.frac >= 0.8 ? "fill hot" : "fill";
  return el("div", { class: "gauge", "data-gauge": g.name },
    el("div", { class: "lbl" }, `${g.name}: ${fmtNum(g.used, 2)} / ${fmtNum(g.limit, 2)} (${Math.round(g.frac * 100)}%)`),
    el("div", { class: "bar" }, el("div", { class: cls, style: `width:${(g.frac * 100).toFixed(1)}%` })));
}

function miniGauge(g) {
  return el("div", { class: "minig", title: `${g.name}: ${fmtNum(g.used, 2)} / ${fmtNum(g.limit, 2)}` },
    el("span", { class: "mini" }, el("span", { style: `width:${(g.frac * 100).toFixed(0)}%` })),
    ` ${g.name} ${Math.round(g.frac * 100)}%`);
}

function short(text, n = 240) {
  if (text === null || text === undefined) return "";
  const s = typeof text === "string" ? text : JSON.stringify(text);
  return s.length > n ? s.slice(0, n) + "…" : s;
}

// One line per event kind (orchestrator/README.md schema); unknown kinds show their raw JSON.
const EVENT_TEXT = {
  run_started: (e) => `task ${short(e.task)}`,
  run_resumed: (e) => `task ${short(e.task)}`,
  plan: (e) => `plan at ${e.path}`,
  iteration_started: () => "",
  model_call: (e) => `${e.role ?? ""} ${e.model || ""} tokens ${e.prompt_tokens}+${e.completion_tokens}` +
    (e.reasoning_tokens ? ` (reasoning ${e.reasoning_tokens})` : "") + ` = ${e.total_tokens}` +
    ` · ${fmtNum(e.latency_s, 2)} s · thinking ${e.thinking ? "on" : "off"} · ${e.finish_reason || ""}`,
  tool_call: (e) => `${e.role ?? ""} ${e.tool}(${short(e.args, 120)}) ${e.ok ? "ok" : "FAILED"} → ${short(e.output, 200)}`,
  exec: (e) => `[${e.where}] $ ${short(e.cmd, 160)} → exit ${e.exit_code} (${e.reason}) ${fmtNum(e.duration_s, 2)} s`,
  commit: (e) => `${String(e.sha || "").slice(0, 10)} ${e.message ?? ""}`,
  check: (e) => `${e.passed ? "passed" : "not passed"} score ${fmtNum(e.score)} · ${short(e.summary)}`,
  verdict: (e) => `${e.verdict} score ${fmtNum(e.score)} · ${(e.findings || []).length} findings`,
  decision: (e) => `${e.action}: ${short(e.reason)}`,
  steer: (e) => e.text,
  strategy_change: (e) => `${e.action}: ${short(e.reason)}`,
  error: (e) => e.message,
  run_finished: (e) => `${e.status} (${e.stop_reason || ""})`,
};

function eventNode(e) {
  const fmt = EVENT_TEXT[e.kind];
  const { _offset, ...rest } = e;
  const text = fmt ? fmt(e) : short(rest, 300);
  const it = e.iteration === null || e.iteration === undefined ? "" : `#${e.iteration} `;
  return el("div", { class: `ev ${e.kind}`, "data-seq": e.seq, "data-offset": _offset },
    el("span", { class: "t" }, fmtTime(e.ts).slice(11)), el("span", { class: "k" }, e.kind), it, text);
}

function diffNode(patch) {
  const pre = el("pre", { class: "diff", "data-testid": "diff" });
  for (const line of patch.split("\n")) {
    let cls = null;
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff --git")) cls = "file";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    else if (line.startsWith("@@")) cls = "hunk";
    pre.append(cls ? el("span", { class: cls }, line) : line, "\n");
  }
  return pre;
}

function tableNode(table, highlight) {
  const head = el("tr", {}, table.columns.map((c) => el("th", {}, c)));
  const rows = table.rows.map((row) => el("tr", {}, row.map((cell, i) => {
    const cls = highlight ? highlight(table.columns[i], cell) : null;
    return el("td", { class: cls }, cell);
  })));
  const more = table.total > table.rows.length ? el("div", { class: "muted" }, `${table.rows.length} of ${table.total} rows`) : null;
  return el("div", {}, el("table", {}, el("thead", {}, head), el("tbody", {}, rows)), more);
}

function rubricNode(node) {
  const score = node.score === null || node.score === undefined ? "–" : fmtNum(node.score, 2);
  const label = [el("span", { class: "score" }, score),
    node.weight !== null && node.weight !== undefined ? el("span", { class: "muted" }, `w${node.weight} `) : null,
    node.label, node.category ? el("span", { class: "muted" }, ` · ${node.category}`) : null];
  if (!node.children.length) {
    return el("div", { class: "leaf", "data-rubric-id": node.id }, label,
      node.explanation ? el("div", { class: "muted" }, node.explanation) : null);
  }
  return el("details", { open: true, "data-rubric-id": node.id }, el("summary", {}, label), node.children.map(rubricNode));
}
