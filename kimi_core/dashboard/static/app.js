// Kimi Proxy's live dashboard. No framework, no build step: the page reads the JSON API
// (/api/...) and listens on /ws for calls and alerts as the proxy records them.
// Text from the database is only ever set as text (textContent), never as HTML.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const KIND_COLOURS = {
  system: "#b9c7e8", hints: "#c9b3e6", tool_definition: "#d7c6ef", tool_result: "#f6c48f", user: "#a7dcc0",
  assistant: "#9fd0ea", tool_call: "#c7e59f", thinking: "#f0d9a0", media: "#f3a6b5", schema: "#e2d7a8", framing: "#dfe2e8",
};
const KIND_NAMES = {
  system: "system prompt", hints: "memory hints (Kimi)", tool_definition: "tool definitions", tool_result: "tool results", user: "user messages",
  assistant: "assistant messages", tool_call: "tool calls", thinking: "thinking sent back", media: "images and documents", schema: "output schema",
  framing: "message framing",
};
const state = { unread: 0, view: null, refresh: null, lastAlertSeen: null, user: "" };

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the page's CSP, a style attribute is not
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US")),
  share: (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`),
  usd: (x) => (x === null || x === undefined ? "–" : x < 0.01 && x > 0 ? `$${x.toFixed(4)}` : `$${x.toFixed(2)}`),
  ms: (x) => (x === null || x === undefined ? "–" : x >= 1000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`),
  when: (ts) => {
    if (!ts) return "–";
    const d = new Date(ts);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
  },
  short: (id) => (id ? id.slice(0, 8) : "–"),
};

// The lists can be one user's (a shared proxy with proxyauth): ?user=NAME on them.
function scoped(path) {
  if (!state.user) return path;
  return `${path}${path.includes("?") ? "&" : "?"}user=${encodeURIComponent(state.user)}`;
}

async function get(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat(2).filter((n) => n !== null && n !== undefined && n !== false));
}

function fail(e) {
  show(h("p", { class: "error" }, `Could not load: ${e.message}`));
}

// -- the gauge: a prompt against its window and the guard's lines -----------------------------

function gauge(share, lines, label) {
  const w = 300, hgt = 30, bar = 14, x = (v) => Math.max(0, Math.min(1, v)) * w;
  const colour = share === null || share === undefined ? "#ccd" :
    share >= lines.reject_at ? "#d64545" : share >= Math.min(...lines.alerts) ? "#e8a317" : "#2f9e6b";
  const svg = s("svg", { class: "gauge", viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none",
                         role: "img", "aria-label": label || `${fmt.share(share)} of the window` },
    s("rect", { x: 0, y: 2, width: w, height: bar, fill: "#eef0f4", rx: 3 }),
    s("rect", { class: "fill", x: 0, y: 2, width: x(share || 0), height: bar, fill: colour, rx: 3 }));
  for (const line of [...lines.alerts, lines.reject_at]) {
    svg.append(s("line", { x1: x(line), x2: x(line), y1: 0, y2: bar + 4,
                           stroke: line === lines.reject_at ? "#d64545" : "#8a94a6",
                           "stroke-width": line === lines.reject_at ? 2 : 1 }));
  }
  return svg;
}

// -- Now ---------------------------------------------------------------------------------------

async function viewNow() {
  const [now, recent] = await Promise.all([get(scoped("/api/now")), get(scoped("/api/calls?limit=25"))]);
  const cards = now.conversations.map((c) => h("div", {
      class: "card", "data-conversation": c.id, onclick: () => (location.hash = `#/conversation/${c.id}`) },
    h("div", { class: "title" }, c.title || `conversation ${fmt.short(c.id)}`),
    h("div", { class: "meta" }, `${c.user ? `${c.user} · ` : ""}${c.agent || "unknown agent"} · ${c.model || "?"} · ${c.calls} call(s) · last ${fmt.when(c.last_seen)}`),
    gauge(c.share, now.lines),
    h("div", { class: "figures" },
      h("span", {}, "context ", h("b", { class: "share" }, fmt.share(c.share)), ` of ${fmt.int(c.context_window)}`),
      h("span", {}, "cost ", h("b", { class: "cost" }, fmt.usd(c.cost_usd))),
      h("span", {}, "cache ", h("b", {}, fmt.share(c.cache_share))),
      h("span", {}, "turns left ", h("b", {}, c.turns_left === null ? "–" : c.turns_left)),
      c.refusals ? h("span", { class: "pill rejected" }, `${c.refusals} refused`) : null,
      c.compactions ? h("span", { class: "pill compacted" }, `${c.compactions} compacted`) : null)));
  show(
    h("h1", {}, "Now ", h("span", { class: "muted" },
      `${state.user ? `${state.user}: ` : ""}${now.conversations.length} conversation(s) active in the last ${now.minutes} min · ${now.calls} call(s) · ${fmt.usd(now.cost_usd)}`)),
    cards.length ? h("div", { class: "cards", id: "conversations" }, cards)
                 : h("div", { class: "empty" }, "No conversation yet: point an agent at the proxy and its calls appear here as they end."),
    h("h2", {}, "Latest calls"),
    callsTable(recent, true));
}

function callsTable(rows, withConversation) {
  if (!rows.length) return h("div", { class: "empty" }, "No call recorded yet.");
  return h("table", { id: "calls" },
    h("thead", {}, h("tr", {},
      h("th", {}, "time"), h("th", {}, "agent"), h("th", {}, "model"), h("th", { class: "num" }, "prompt"),
      h("th", { class: "num" }, "share"), h("th", { class: "num" }, "output"), h("th", { class: "num" }, "cost"),
      h("th", { class: "num" }, "duration"), h("th", {}, "action"), withConversation ? h("th", {}, "conversation") : null)),
    h("tbody", {}, rows.map((r) => h("tr", {
        class: "link", "data-call": r.id, onclick: () => (location.hash = `#/call/${r.id}`) },
      h("td", {}, fmt.when(r.ts)), h("td", {}, `${r.user && !state.user ? `${r.user} · ` : ""}${r.agent || "–"}`),
      h("td", {}, r.model || "–"),
      h("td", { class: "num" }, fmt.int(r.prompt_tokens ?? r.prompt_tokens_cal ?? r.prompt_tokens_est)),
      h("td", { class: "num" }, fmt.share(r.window_share)), h("td", { class: "num" }, fmt.int(r.completion_tokens)),
      h("td", { class: "num" }, fmt.usd(r.cost_usd)), h("td", { class: "num" }, fmt.ms(r.duration_ms)),
      h("td", {}, h("span", { class: `pill ${r.action || ""}` }, r.action || "–")),
      withConversation ? h("td", {}, fmt.short(r.conversation_id)) : null))));
}

// -- One conversation: its timeline --------------------------------------------------------

function timeline(turns, lines, window) {
  const W = 900, H = 300, L = 60, R = 20, T = 16, B = 30;
  const prompts = turns.map((t) => t.prompt || 0);
  const top = Math.max(window || 0, ...prompts, 1);
  const x = (i) => L + (turns.length <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (turns.length - 1));
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "prompt per turn" });
  // The axis: five even ticks.
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eef0f4" }),
               s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#667085" },
                 v >= 1000 ? `${Math.round(v / 1000)}K` : Math.round(v)));
  }
  if (window) {
    for (const line of [...new Set([...lines.alerts, lines.reject_at])].sort()) {
      const yy = y(window * line);
      svg.append(s("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: line === lines.reject_at ? "#d64545" : "#e8a317",
                             "stroke-dasharray": "4 3" }),
                 s("text", { x: W - R - 2, y: yy - 3, "text-anchor": "end", "font-size": 10, fill: "#667085" },
                   `${Math.round(line * 100)}%`));
    }
  }
  if (turns.length) {
    svg.append(s("polyline", { points: turns.map((t, i) => `${x(i)},${y(t.prompt || 0)}`).join(" "),
                               fill: "none", stroke: "#3b6fd6", "stroke-width": 2 }));
  }
  turns.forEach((t, i) => {
    const marks = t.marks || [];
    const colour = marks.includes("refusal") ? "#d64545" : marks.includes("compaction") ? "#1d4ed8" :
      marks.length ? "#e8a317" : "#3b6fd6";
    const r = marks.length ? 6 : 3.5;
    svg.append(s("circle", { cx: x(i), cy: y(t.prompt || 0), r, fill: colour, class: "turn", "data-call": t.id,
                             style: "cursor:pointer", onclick: () => (location.hash = `#/call/${t.id}`) },
      s("title", {}, `turn ${i + 1}: ${fmt.int(t.prompt)} tokens${marks.length ? " · " + marks.join(", ") : ""}`)));
  });
  svg.append(s("text", { x: L, y: H - 8, "font-size": 11, fill: "#667085" }, "turn 1"),
             s("text", { x: W - R, y: H - 8, "font-size": 11, fill: "#667085", "text-anchor": "end" }, `turn ${turns.length}`));
  return svg;
}

async function viewConversation(id) {
  const data = await get(`/api/conversations/${encodeURIComponent(id)}`);
  const c = data.conversation;
  show(
    h("h1", {}, c.title || `conversation ${fmt.short(c.id)}`),
    h("p", { class: "muted" }, `${c.agent || "unknown agent"} · ${c.model || "?"} · ${c.calls} call(s) · ${fmt.usd(c.cost_usd)} · cache ${fmt.share(c.cache_share)}` +
      (c.outlook ? ` · ${c.outlook}` : "")),
    h("div", { class: "chart", id: "timeline" }, timeline(data.turns, data.lines, c.context_window)),
    h("div", { class: "legend" },
      h("span", {}, h("i", { style: "background:#d64545" }), "refusal"),
      h("span", {}, h("i", { style: "background:#1d4ed8" }), "compaction"),
      h("span", {}, h("i", { style: "background:#e8a317" }), "alert (threshold, cache break, budget)")),
    data.children.length ? h("p", {}, "Subagents: ", data.children.map((k) =>
      h("a", { href: `#/conversation/${k.id}`, style: "margin-right:1em" }, k.title || fmt.short(k.id)))) : null,
    h("h2", {}, "Turns"),
    callsTable([...data.turns].reverse(), false));
}

// -- One call: the composition treemap -----------------------------------------------------

function squarify(items, x, y, w, h) {
  // Squarified treemap (Bruls, Huizing, van Wijk): rows of cells as close to squares as can be.
  const out = [];
  const total = items.reduce((a, b) => a + b.value, 0);
  if (!total) return out;
  const scale = (w * h) / total;
  let rest = items.map((it) => ({ ...it, area: it.value * scale })).filter((it) => it.area > 0);
  const worst = (row, side) => {
    const sum = row.reduce((a, b) => a + b.area, 0);
    const max = Math.max(...row.map((r) => r.area)), min = Math.min(...row.map((r) => r.area));
    return Math.max((side * side * max) / (sum * sum), (sum * sum) / (side * side * min));
  };
  while (rest.length) {
    const side = Math.min(w, h);
    let row = [rest[0]], i = 1;
    while (i < rest.length && worst([...row, rest[i]], side) <= worst(row, side)) row.push(rest[i++]);
    rest = rest.slice(i);
    const sum = row.reduce((a, b) => a + b.area, 0);
    if (w >= h) {
      const cw = sum / h; let cy = y;
      for (const r of row) { const ch = r.area / cw; out.push({ ...r, x, y: cy, w: cw, h: ch }); cy += ch; }
      x += cw; w -= cw;
    } else {
      const ch = sum / w; let cx = x;
      for (const r of row) { const cw2 = r.area / ch; out.push({ ...r, x: cx, y, w: cw2, h: ch }); cx += cw2; }
      y += ch; h -= ch;
    }
  }
  return out;
}

function treemap(groups, total) {
  const box = h("div", { class: "treemap", id: "treemap" });
  requestAnimationFrame(() => {
    const W = box.clientWidth || 900, H = box.clientHeight || 420;
    const items = groups.filter((g) => g.tokens > 0).map((g) => ({ ...g, value: g.tokens }));
    for (const c of squarify(items, 0, 0, W, H)) {
      const share = c.tokens / total;
      box.append(h("div", {
          class: "cell", "data-kind": c.kind, "data-label": c.label, "data-tokens": c.tokens,
          style: `left:${c.x}px;top:${c.y}px;width:${c.w}px;height:${c.h}px;background:${KIND_COLOURS[c.kind] || "#ddd"}`,
          title: `${KIND_NAMES[c.kind] || c.kind}: ${c.label} — ${fmt.int(c.tokens)} tokens (${fmt.share(share)})` +
                 (c.count > 1 ? `, ${c.count} parts` : "") },
        c.w > 40 && c.h > 18 ? h("span", {}, c.label) : null,
        c.w > 40 && c.h > 34 ? h("span", {}, `${fmt.int(c.tokens)} · ${fmt.share(share)}`) : null));
    }
  });
  return box;
}

function partName(g) {
  return ["tool_result", "tool_call", "tool_definition"].includes(g.kind)
    ? `${KIND_NAMES[g.kind].replace(/s$/, "")} of ${g.label}` : g.label;
}

async function viewCall(id) {
  const data = await get(`/api/calls/${encodeURIComponent(id)}`);
  const c = data.call, comp = data.composition;
  const byKind = {};
  for (const g of comp.groups) byKind[g.kind] = (byKind[g.kind] || 0) + g.tokens;
  show(
    h("h1", {}, `Call ${fmt.short(c.id)} `, h("span", { class: `pill ${c.action || ""}` }, c.action || "")),
    h("p", { class: "muted" }, `${fmt.when(c.ts)} · ${c.agent || "unknown agent"} · ${c.model || "?"} · status ${c.status_code ?? "–"} · ` +
      `${fmt.ms(c.duration_ms)} · ${fmt.usd(c.cost_usd)}`,
      c.conversation_id ? h("span", {}, " · ", h("a", { href: `#/conversation/${c.conversation_id}` }, "its conversation")) : null),
    h("div", { class: "figures" },
      h("span", {}, "prompt (local count) ", h("b", { id: "local-tokens" }, fmt.int(c.prompt_tokens_est))),
      h("span", {}, "calibrated ", h("b", {}, fmt.int(c.prompt_tokens_cal))),
      h("span", {}, "reported ", h("b", {}, fmt.int(c.prompt_tokens))),
      h("span", {}, "window ", h("b", {}, `${fmt.share(c.window_share)} of ${fmt.int(c.context_window)}`)),
      h("span", {}, "cached ", h("b", {}, fmt.int(c.cached_tokens))),
      h("span", {}, "output ", h("b", {}, fmt.int(c.completion_tokens))),
      c.tokens_before !== null && c.tokens_after !== null && c.tokens_before !== c.tokens_after
        ? h("span", {}, "compacted ", h("b", {}, `${fmt.int(c.tokens_before)} → ${fmt.int(c.tokens_after)}`),
            ` (${c.compacted_results} tool result(s); below: the prompt as Kimi sent it on)`) : null),
    data.refusal ? [h("h2", {}, "Refused"), h("div", { class: "refusal", id: "refusal" }, data.refusal)] : null,
    c.hints && c.hints.length ? [h("h2", {}, "Memory hints added to its system prompt"),
      h("ul", { id: "hints" }, c.hints.map((m) => h("li", {}, `${m.kind}: ${m.content}`)))] : null,
    c.project ? h("p", { class: "muted" }, `project: ${c.project}`) : null,
    h("h2", {}, "What fills the prompt ", h("span", { class: "muted", id: "composition-total" },
      comp.available ? `${fmt.int(comp.tokens)} tokens (${comp.encoding})` : "")),
    comp.available ? [
      h("div", { class: "legend" }, Object.entries(byKind).sort((a, b) => b[1] - a[1]).map(([k, v]) =>
        h("span", {}, h("i", { style: `background:${KIND_COLOURS[k]}` }), `${KIND_NAMES[k] || k} ${fmt.int(v)} (${fmt.share(v / comp.tokens)})`))),
      treemap(comp.groups, comp.tokens),
      h("table", { id: "parts", style: "margin-top:1rem" },
        h("thead", {}, h("tr", {}, h("th", {}, "part"), h("th", {}, "kind"), h("th", { class: "num" }, "count"),
                                    h("th", { class: "num" }, "tokens"), h("th", { class: "num" }, "share"))),
        h("tbody", {}, comp.groups.map((g) => h("tr", { "data-kind": g.kind, "data-label": g.label },
          h("td", {}, g.label), h("td", {}, KIND_NAMES[g.kind] || g.kind), h("td", { class: "num" }, g.count),
          h("td", { class: "num tokens" }, fmt.int(g.tokens)), h("td", { class: "num" }, fmt.share(g.tokens / comp.tokens)))))),
    ] : h("div", { class: "empty" }, "Its body is no longer stored (retention), or was not an LLM request Kimi could read."),
    data.growth ? [h("h2", {}, "Since the previous turn ", h("span", { class: "muted" },
        `${data.growth.tokens >= 0 ? "+" : ""}${fmt.int(data.growth.tokens)} tokens`)),
      data.growth.new_parts.length ? h("ul", {}, data.growth.new_parts.map((g) =>
        h("li", {}, `${partName(g)} — ${fmt.int(g.tokens)} tokens`))) : h("p", { class: "muted" }, "No new message."),
      h("p", {}, h("a", { href: `#/call/${data.growth.previous_call}` }, "previous call"))] : null,
    data.archives.length ? [h("h2", {}, "Compacted tool results"), h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "tool"), h("th", { class: "num" }, "original"), h("th", { class: "num" }, "sent"),
                                  h("th", {}, "original (lossless)"))),
      h("tbody", {}, data.archives.map((a) => h("tr", {}, h("td", {}, a.tool_name || "–"),
        h("td", { class: "num" }, fmt.int(a.original_tokens)), h("td", { class: "num" }, fmt.int(a.kept_tokens)),
        h("td", {}, h("a", { href: `/api/archives/${a.sha256}`, target: "_blank", rel: "noopener", class: "original" },
                      "open the original"), " · ", h("code", {}, `kimi-proxy restore ${a.sha256.slice(0, 12)}`))))))] : null,
    data.alerts.length ? [h("h2", {}, "Alerts"), alertList(data.alerts)] : null);
}

// -- Findings, alerts, memories ------------------------------------------------------------

async function viewFindings() {
  const found = await get(scoped("/api/findings"));
  show(h("h1", {}, "Findings ", h("span", { class: "muted" }, "from the last 24 hours")),
    found.length ? h("div", { id: "findings" }, found.map((f) => h("div", { class: `finding s${f.severity}`, "data-kind": f.kind },
      h("div", { class: "title" }, f.title), h("div", { class: "muted" }, f.detail || ""),
      h("div", {}, [
        f.request_id ? h("a", { href: `#/call/${f.request_id}` }, "the call") : null,
        f.request_id && f.conversation_id ? " · " : null,
        f.conversation_id ? h("a", { href: `#/conversation/${f.conversation_id}` }, "the conversation") : null]))))
      : h("div", { class: "empty" }, "Nothing to look at: no dominant tool result, unused tool, repeat, cache break or overflow."));
}

function alertList(rows) {
  return h("table", { class: "alerts" },
    h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "kind"), h("th", { class: "num" }, "level"), h("th", {}, "message"))),
    h("tbody", {}, rows.map((a) => h("tr", { class: a.request_id ? "link" : "", "data-alert": a.id,
        onclick: () => a.request_id && (location.hash = `#/call/${a.request_id}`) },
      h("td", {}, fmt.when(a.ts)), h("td", {}, h("span", { class: `pill ${a.kind}` }, a.kind.replace("_", " "))),
      h("td", { class: "num" }, fmt.share(a.level)), h("td", {}, a.message)))));
}

async function viewAlerts() {
  const rows = await get(scoped("/api/alerts?limit=200"));
  setUnread(0);
  show(h("h1", {}, "Alerts"), rows.length ? alertList(rows) : h("div", { class: "empty" }, "No alert yet."));
}

async function viewMemories(query) {
  const rows = await get(scoped(`/api/memories${query ? `?q=${encodeURIComponent(query)}` : ""}`));
  const search = h("input", { type: "search", placeholder: "Search what Kimi remembers", value: query || "",
                              onchange: (e) => viewMemories(e.target.value).catch(fail) });
  show(h("h1", {}, "Memories ", h("span", { class: "muted" }, "what your agents were told about you; yours to delete")),
    h("p", {}, search),
    rows.length ? h("table", { id: "memories" },
      h("thead", {}, h("tr", {}, h("th", {}, "kind"), h("th", {}, "what"), h("th", {}, "project"), h("th", { class: "num" }, "said"), h("th", {}, "last"), h("th", {}, ""))),
      h("tbody", {}, rows.map((m) => h("tr", { "data-memory": m.id },
        h("td", {}, m.kind), h("td", { title: m.source_text || "" }, m.content), h("td", { class: "muted" }, m.project || "any"),
        h("td", { class: "num" }, m.count),
        h("td", {}, fmt.when(m.last_seen)),
        h("td", {}, h("button", { class: "forget", type: "button", onclick: () => forget(m.id, query) }, "Forget"))))))
      : h("div", { class: "empty" }, query ? "No memory matches." : "Nothing remembered yet."));
}

async function forget(id, query) {
  const r = await fetch(`/api/memories/${id}`, { method: "DELETE", credentials: "same-origin", headers: { "X-Kimi-Change": "1" } });
  if (!r.ok) toast(`Could not forget memory ${id}: ${r.statusText}`);
  viewMemories(query).catch(fail);
}

// -- Live: the WebSocket -------------------------------------------------------------------

function setUnread(n) {
  state.unread = n;
  const badge = document.getElementById("unread");
  badge.textContent = String(n);
  badge.hidden = n === 0;
  document.title = n ? `(${n}) Kimi Proxy` : "Kimi Proxy";
}

function toast(text, kind) {
  const el = h("div", { class: "toast" }, kind ? h("b", {}, `${kind.replace("_", " ")}: `) : null, text);
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), 8000);
}

function onEvent(event) {
  if (state.user && event.user !== state.user) return;  // another user's, while the page shows one
  if (event.type === "alert") {
    if (state.view !== "alerts") setUnread(state.unread + 1);
    toast(event.message, event.kind);
    if (window.Notification && Notification.permission === "granted") {
      new Notification(`Kimi Proxy: ${event.kind.replace("_", " ")}`, { body: event.message });
    }
  }
  if (event.type === "call" || event.type === "alert") scheduleRefresh();
}

function scheduleRefresh() {
  // Calls come in bursts: one refresh for those of the next 300 ms.
  if (state.refresh) return;
  state.refresh = setTimeout(() => {
    state.refresh = null;
    if (state.view === "now" || state.view === "alerts" || state.view === "conversation") route(true);
  }, 300);
}

function connect(delay) {
  const live = document.getElementById("live");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { live.textContent = "live"; live.className = "live on"; delay = 500; };
  ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); } };
  ws.onclose = () => {
    live.textContent = "reconnecting"; live.className = "live off";
    setTimeout(() => connect(Math.min((delay || 500) * 2, 10000)), delay || 500);
  };
}

// -- Users (a shared proxy) -------------------------------------------------------------------

async function loadUsers() {
  const rows = await get("/api/users");
  const select = document.getElementById("user");
  const saved = sessionStorage.getItem("kimi-user") || "";
  select.replaceChildren(h("option", { value: "" }, "everyone"),
    ...rows.map((u) => h("option", { value: u.user }, `${u.user} (${fmt.usd(u.cost_today)} today)`)));
  if (saved && rows.some((u) => u.user === saved)) state.user = saved;
  select.value = state.user;
  document.getElementById("users").hidden = rows.length === 0;
  select.onchange = () => {
    state.user = select.value;
    sessionStorage.setItem("kimi-user", state.user);
    route(false);
  };
}

// -- Routing -------------------------------------------------------------------------------

async function route(refresh) {
  const [, view, arg] = (location.hash || "#/").match(/^#\/([a-z]*)\/?(.*)$/) || [];
  state.view = view || "now";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === state.view);
  const y = window.scrollY;
  try {
    if (state.view === "conversation") await viewConversation(arg);
    else if (state.view === "call") await viewCall(arg);
    else if (state.view === "findings") await viewFindings();
    else if (state.view === "alerts") await viewAlerts();
    else if (state.view === "memories") await viewMemories();
    else await viewNow();
    if (refresh) window.scrollTo(0, y);
    document.body.dataset.loaded = state.view;
  } catch (e) {
    fail(e);
  }
}

window.addEventListener("hashchange", () => route(false));
window.addEventListener("DOMContentLoaded", () => {
  const notify = document.getElementById("notify");
  if (!window.Notification || Notification.permission === "granted") notify.hidden = true;
  notify.addEventListener("click", () => Notification.requestPermission().then(() => { notify.hidden = Notification.permission === "granted"; }));
  loadUsers().catch(() => {}).finally(() => route(false));
  connect(500);
});
