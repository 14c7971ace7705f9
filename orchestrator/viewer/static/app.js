// Single-page viewer: #/ runs list, #/run/<id> run page, #/run/<id>/<iteration> with an iteration open.
"use strict";

const state = { timer: null, source: null, run: null, filters: { status: "", kind: "" } };
const MAX_EVENT_ROWS = 3000;
const $main = () => document.getElementById("main");

async function api(path, options) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

function setLive(on) { document.getElementById("live").classList.toggle("on", on); }

function teardown() {
  if (state.timer) clearInterval(state.timer);
  if (state.source) state.source.close();
  state.timer = state.source = state.run = null;
}

function route() {
  teardown();
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "run" && parts[1]) showRun(parts[1], parts[2] === undefined ? null : Number(parts[2]));
  else showRuns();
}

// ---- runs page ----------------------------------------------------------------------------------------
function runRow(r) {
  const gauges = budgetGauges(r.budget, r.iteration);
  return el("tr", { class: "run-row", "data-run-id": r.id, "data-status": r.status, "data-kind": r.kind },
    el("td", {}, el("a", { href: `#/run/${encodeURIComponent(r.id)}` }, r.id)),
    el("td", {}, r.kind), el("td", {}, r.title),
    el("td", {}, badge(r.status, `st-${r.status}`), r.stop_reason ? el("span", { class: "muted" }, ` ${r.stop_reason}`) : null),
    el("td", { class: "num" }, fmtNum(r.iteration)),
    el("td", { class: "best" }, r.kind === "kernel" && r.best_score != null ? `${fmtNum(r.best_score, 2)}×` : fmtNum(r.best_score)),
    el("td", {}, gauges.map(miniGauge)),
    el("td", {}, fmtTime(r.created_at)), el("td", {}, fmtTime(r.updated_at)));
}

function renderRuns(data) {
  const { status, kind } = state.filters;
  const kinds = [...new Set(data.runs.map((r) => r.kind))].sort();
  const select = (name, values) => el("select", { id: `filter-${name}`, onchange: (ev) => { state.filters[name] = ev.target.value; renderRuns(data); } },
    el("option", { value: "" }, `all ${name === "status" ? "statuses" : "kinds"}`),
    values.map((v) => el("option", { value: v, selected: state.filters[name] === v }, v)));
  const rows = data.runs.filter((r) => (!status || r.status === status) && (!kind || r.kind === kind));
  const head = ["run", "kind", "task", "status", "iterations", "best", "budget", "started", "updated"];
  $main().replaceChildren(
    el("div", { class: "filters" }, "Filter:",
      select("status", ["running", "paused", "succeeded", "stopped", "failed"]), select("kind", kinds),
      el("span", { id: "run-count" }, `${rows.length} of ${data.runs.length} runs in ${data.runs_dir}`)),
    el("div", { class: "panel" }, el("table", { id: "runs" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map(runRow)))));
}

async function showRuns() {
  document.getElementById("crumbs").textContent = "runs";
  const load = async () => {
    try { renderRuns(await api("/api/runs")); setLive(true); } catch (err) { setLive(false); }
  };
  await load();
  state.timer = setInterval(load, 2000);
}

// ---- run page -----------------------------------------------------------------------------------------
function header(run) {
  const s = run.summary;
  return el("div", { class: "panel", id: "run-header" },
    el("div", {}, el("b", {}, s.title || s.id), " ", badge(s.kind), " ", badge(s.status, `st-${s.status}`),
      s.stop_reason ? el("span", { class: "muted" }, ` ${s.stop_reason}`) : null,
      run.stop_requested ? el("span", { class: "note", id: "stop-flag" }, ` stop requested (${run.stop_requested})`) : null),
    el("div", { class: "muted" }, `${s.id} · iteration ${s.iteration} · best ${fmtNum(s.best_score)}` +
      (s.best_iteration != null ? ` at #${s.best_iteration}` : "") + ` · started ${fmtTime(s.created_at)} · updated ${fmtTime(s.updated_at)}`),
    el("div", { id: "gauges", style: "margin-top:8px" }, budgetGauges(s.budget, s.iteration).map(gaugeNode)));
}

function controls(runId) {
  const note = el("span", { class: "note", id: "control-note" });
  const text = el("textarea", { id: "steer-text", placeholder: "Steer the producer: a requirement it sees at its next step" });
  const post = (what, body) => api(`/api/runs/${encodeURIComponent(runId)}/${what}`,
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const steer = async () => {
    try { await post("steer", { text: text.value }); text.value = ""; note.textContent = "steer sent"; }
    catch (err) { note.textContent = `steer failed: ${err.message}`; }
  };
  const stop = async () => {
    if (!confirm("Stop this run at its next step?")) return;
    try {
      const res = await post("stop", { reason: "user" });
      note.textContent = "stop requested";
      state.run = { ...state.run, stop_requested: res.stop_requested };
      document.getElementById("run-header")?.replaceWith(header(state.run));
    }
    catch (err) { note.textContent = `stop failed: ${err.message}`; }
  };
  return el("div", { class: "panel controls" }, text, el("button", { id: "steer-btn", onclick: steer }, "Steer"),
    el("button", { id: "stop-btn", class: "danger", onclick: stop }, "Stop run"), note);
}

function timelineNode(runId, rows, selected, total) {
  const items = rows.map((r) => el("div", { class: `it ${r.iteration === selected ? "sel" : ""}`, "data-iteration": r.iteration,
    onclick: () => { location.hash = `#/run/${encodeURIComponent(runId)}/${r.iteration}`; } },
    el("span", { class: "n" }, `#${r.iteration}`),
    el("span", { class: "flow" }, "producer → check "), badge(r.passed ? "pass" : "fail", r.passed ? "v-pass" : "v-fail"),
    el("span", { class: "flow" }, " → verifier "), badge(r.verdict, `v-${r.verdict}`),
    el("span", { class: "flow" }, " → "), badge(r.action, `a-${r.action}`),
    el("span", { class: "score" }, ` ${fmtNum(r.score)}`)));
  const box = el("div", { class: "timeline", id: "timeline" }, items.length ? items : el("div", { class: "muted" }, "no finished iteration yet"));
  if (total > rows.length) {  // long runs: the latest iterations first, earlier ones on request
    const earlier = el("button", { id: "earlier", onclick: async () => {
      const first = Number(box.querySelector(".it")?.dataset.iteration ?? 0);
      const page = await api(`/api/runs/${encodeURIComponent(runId)}/timeline?before=${first}&limit=200`);
      if (page.timeline.length) earlier.after(...timelineNode(runId, page.timeline, selected, 0).children);
      if (!page.remaining) earlier.remove();
    } }, "earlier iterations");
    box.prepend(earlier);
  }
  return box;
}

function eventsPanel(runId, page) {
  const list = el("div", { class: "events", id: "events" }, page.events.map(eventNode));
  let before = page.start;
  const older = el("button", { id: "older", onclick: async () => {
    const p = await api(`/api/runs/${encodeURIComponent(runId)}/events?before=${before}&limit=200`);
    before = p.start;
    const rows = p.events.map(eventNode);
    applyEventFilter(list, rows);
    list.prepend(...rows);
    if (p.start === 0) older.disabled = true;
  } }, "older events");
  if (page.start === 0) older.disabled = true;
  const kinds = ["model_call", "tool_call", "exec", "commit", "check", "verdict", "decision", "steer", "error"];
  const filter = el("select", { id: "event-kind", onchange: () => applyEventFilter(list) },
    el("option", { value: "" }, "all events"), kinds.map((k) => el("option", { value: k }, k)));
  return el("div", { class: "panel" }, older, " ", filter, list);
}

function applyEventFilter(list, rows) {
  const kind = document.getElementById("event-kind")?.value || "";
  for (const row of rows || list.children) row.hidden = kind !== "" && !row.classList.contains(kind);
}

function appendEvents(events) {
  const list = document.getElementById("events");
  if (!list) return;
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
  const rows = events.map(eventNode);
  applyEventFilter(list, rows);
  list.append(...rows);
  while (list.childElementCount > MAX_EVENT_ROWS) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

async function showRun(runId, iteration) {
  document.getElementById("crumbs").replaceChildren(el("a", { href: "#/" }, "runs"), ` / ${runId}`);
  let run;
  try { run = await api(`/api/runs/${encodeURIComponent(runId)}`); }
  catch (err) { $main().replaceChildren(el("div", { class: "panel" }, `cannot open run ${runId}: ${err.message}`)); return; }
  state.run = run;
  const detail = el("div", { class: "panel", id: "iteration" }, el("span", { class: "muted" }, "select an iteration"));
  $main().replaceChildren(header(run), controls(runId),
    el("div", { class: "grid" },
      el("div", {}, el("h2", { id: "it-count" }, `Iterations (${run.iterations_total})`), el("div", { class: "panel" }, timelineNode(runId, run.timeline, iteration, run.iterations_total)), detail),
      el("div", {}, el("h2", {}, "Events"), eventsPanel(runId, run.events))),
    el("div", { id: "task" }, taskView(runId, run.task)));
  const list = document.getElementById("events");
  list.scrollTop = list.scrollHeight;
  if (iteration !== null) showIteration(runId, iteration, detail);
  follow(runId, run.events.end);
}

function follow(runId, offset) {
  const source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/stream?offset=${offset}`);
  state.source = source;
  source.onopen = () => setLive(true);
  source.onerror = () => setLive(false);
  source.addEventListener("events", (msg) => appendEvents(JSON.parse(msg.data).events));
  source.addEventListener("run", async (msg) => {
    const data = JSON.parse(msg.data);
    const changed = state.run && data.summary.iteration !== state.run.summary.iteration;
    state.run = { ...state.run, ...data };
    document.getElementById("run-header")?.replaceWith(header(state.run));
    if (changed) {  // a new iteration finished: refresh the timeline and the task view
      const fresh = await api(`/api/runs/${encodeURIComponent(runId)}`);
      const sel = document.querySelector(".it.sel");
      document.getElementById("timeline")?.replaceWith(timelineNode(runId, fresh.timeline, sel ? Number(sel.dataset.iteration) : null, fresh.iterations_total));
      document.getElementById("it-count").textContent = `Iterations (${fresh.iterations_total})`;
      document.getElementById("task")?.replaceChildren(taskView(runId, fresh.task));
    }
  });
}

async function showIteration(runId, n, box) {
  box.replaceChildren(el("span", { class: "muted" }, `loading iteration ${n}…`));
  let d;
  try { d = await api(`/api/runs/${encodeURIComponent(runId)}/iterations/${n}`); }
  catch (err) { box.replaceChildren(`iteration ${n}: ${err.message}`); return; }
  const it = d.iteration;
  const verdict = typeof it.verdict === "object" && it.verdict ? it.verdict : { verdict: it.verdict };
  const decision = typeof it.decision === "object" && it.decision ? it.decision : { action: it.decision };
  const check = it.check || {};
  const findings = verdict.findings || check.findings || [];
  const execs = d.events.filter((e) => e.kind === "exec" || e.kind === "tool_call" || e.kind === "error");
  box.replaceChildren(el("div", {},
    el("h3", {}, `Iteration ${n}`),
    el("div", { id: "verdict" }, "verdict ", badge(verdict.verdict, `v-${verdict.verdict}`), ` score ${fmtNum(verdict.score ?? check.score)} · decision `,
      badge(decision.action, `a-${decision.action}`), decision.reason ? ` ${decision.reason}` : ""),
    el("div", { class: "muted" }, `check: ${check.passed ? "passed" : "not passed"} — ${check.summary || ""}`),
    el("ul", { class: "findings", id: "findings" }, findings.map((f) => el("li", {}, f))),
    el("h2", {}, "Diff"), d.diff.error ? el("div", { class: "muted" }, d.diff.error)
      : [el("div", { class: "muted" }, `${String(d.diff.sha).slice(0, 10)} ${d.diff.message}`), diffNode(d.diff.patch)],
    el("h2", {}, `Logs (${execs.length} execs/tools${d.events_truncated ? ", truncated" : ""})`),
    el("div", { id: "logs" }, execs.map((e) => el("div", {}, eventNode(e),
      e.stdout_tail ? el("pre", {}, e.stdout_tail) : null, e.stderr_tail ? el("pre", {}, e.stderr_tail) : null)),
    d.logs.map((p) => el("div", {}, el("a", { href: fileUrl(runId, p), target: "_blank" }, p)))),
    d.artifacts.length ? [el("h2", {}, "Artifacts"), el("div", { id: "iteration-artifacts" },
      d.artifacts.map((p) => el("div", {}, el("a", { href: fileUrl(runId, p), target: "_blank" }, p))))] : null));
}

// ---- task views ---------------------------------------------------------------------------------------
function kernelView(runId, v) {
  const cheat = (col, cell) => (/cheat/i.test(col) && cell && !/^(0|false|no|none|)$/i.test(cell)) ? "cheat" : null;
  return el("div", { id: "kernel-view" },
    el("h2", {}, "Best speed-up vs iteration"),
    el("div", { class: "panel" }, v.plot ? el("img", { src: fileUrl(runId, v.plot), alt: "best speed-up vs iteration", style: "max-width:720px;background:#fff" })
      : el("span", { class: "muted" }, "no plot yet")),
    el("h2", {}, "Candidates"),
    el("div", { class: "panel", id: "candidates" }, v.candidates ? tableNode(v.candidates, cheat) : el("span", { class: "muted" }, "no candidates yet")),
    el("h2", {}, "Best candidate"),
    el("div", { class: "panel", id: "best-code" }, v.best.length ? v.best.map((f) => [el("div", { class: "muted" }, f.path), el("pre", {}, f.code)])
      : el("span", { class: "muted" }, "no verified candidate yet")));
}

function pairItem(runId, item) {
  if (!item) return el("div", { class: "muted" }, "missing");
  const name = el("div", { class: "muted" }, item.path);
  if (item.type === "image") return el("div", {}, name, el("img", { src: fileUrl(runId, item.path), alt: item.path }));
  if (item.type === "table") return el("div", {}, name, tableNode(item.table));
  if (item.type === "text") return el("div", {}, name, el("pre", {}, item.text));
  return el("div", {}, el("a", { href: fileUrl(runId, item.path), target: "_blank" }, item.path));
}

function paperView(runId, v) {
  return el("div", { id: "paper-view" },
    el("h2", {}, "Rubric"),
    el("div", { class: "panel rubric", id: "rubric" }, v.rubric ? rubricNode(v.rubric) : el("span", { class: "muted" }, "no rubric yet")),
    v.report ? el("div", { class: "panel" }, el("a", { id: "report-link", href: fileUrl(runId, v.report), target: "_blank" }, "open the reproduction report")) : null,
    el("h2", {}, "Paper vs reproduced"),
    el("div", { id: "pairs" }, v.pairs.length ? v.pairs.map((p) => el("div", { class: "panel pair", "data-pair": p.name },
      el("b", {}, p.name), el("div", { class: "pairs" }, el("div", {}, el("div", {}, "paper"), pairItem(runId, p.paper)),
        el("div", {}, el("div", {}, "reproduced"), pairItem(runId, p.reproduced))), p.other.map((o) => pairItem(runId, o))))
      : el("span", { class: "muted" }, "no tables or figures yet")));
}

function taskView(runId, view) {
  if (!view) return el("span");
  return view.kind === "kernel" ? kernelView(runId, view) : paperView(runId, view);
}

window.addEventListener("hashchange", () => {
  // Opening another iteration of the same run keeps the page (and its event stream) and swaps the detail box.
  const m = location.hash.match(/^#\/run\/([^/]+)\/(\d+)$/);
  if (m && state.run && state.run.summary.id === decodeURIComponent(m[1])) {
    document.querySelectorAll(".it.sel").forEach((n) => n.classList.remove("sel"));
    document.querySelector(`.it[data-iteration="${m[2]}"]`)?.classList.add("sel");
    showIteration(decodeURIComponent(m[1]), Number(m[2]), document.getElementById("iteration"));
    return;
  }
  route();
});
route();
