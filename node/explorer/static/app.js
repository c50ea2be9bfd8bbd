// shadow-ledger explorer: a read-only single page over the node's JSON API.
// No outside assets (the page must work offline) and no HTML parsing: every value from the
// ledger is inserted as text, so a record's strings can never become markup or script.
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#17becf", "#7f7f7f"];
const LATENCY_COLOR = "#0b5cad";
const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const doc = await response.json();
  if (!response.ok) throw new Error(doc.error || response.statusText);
  return doc;
}

function short(hex, n = 16) { return hex && hex.length > n ? hex.slice(0, n) + "…" : hex; }
function when(ms) { return ms ? new Date(Number(ms)).toISOString().replace(".000Z", "Z") : "—"; }
function link(href, text) { return el("a", { href }, text); }
function mono(text) { return el("td", { class: "mono" }, text); }
function card(title, attrs, ...body) {
  return el("section", Object.assign({ class: "card" }, attrs || {}), el("h2", {}, title), ...body);
}

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function keyValues(pairs) {
  return el("table", { class: "kv" }, el("tbody", {}, pairs.map(([k, v]) =>
    el("tr", {}, el("th", {}, k),
      v instanceof HTMLTableCellElement ? v : v instanceof Node ? el("td", {}, v) : mono(v)))));
}

// --- charts: inline SVG, drawn here ----------------------------------------------------

function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7200000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function fmt(value, unit) { return unit === "ms" ? duration(value) : String(Math.round(value)); }

function axes(g, w, h, pad, max, unit) {
  g.append(svg("line", { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b, stroke: "#888" }));
  g.append(svg("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: h - pad.b, stroke: "#888" }));
  for (const f of [0, 0.5, 1]) {
    const y = h - pad.b - f * (h - pad.t - pad.b);
    const label = svg("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end", "font-size": 11,
                                fill: "#444" });
    label.textContent = fmt(f * max, unit);
    g.append(label);
    if (f > 0) g.append(svg("line", { x1: pad.l, y1: y, x2: w - pad.r, y2: y, stroke: "#e3e6ea" }));
  }
}

function stackedBars(id, labels, series, unit) {
  const w = 600, h = 230, pad = { l: 58, r: 10, t: 10, b: 34 };
  const totals = labels.map((_, i) => series.reduce((s, x) => s + x.values[i], 0));
  const max = Math.max(1, ...totals);
  const chart = svg("svg", { id, class: "chart", viewBox: `0 0 ${w} ${h}`, role: "img" });
  axes(chart, w, h, pad, max, unit);
  const slot = (w - pad.l - pad.r) / Math.max(1, labels.length);
  const scale = (h - pad.t - pad.b) / max;
  labels.forEach((label, i) => {
    let y = h - pad.b;
    series.forEach((s) => {
      const v = s.values[i];
      if (!v) return;
      const bh = v * scale;
      y -= bh;
      const bar = svg("rect", { x: pad.l + i * slot + slot * 0.1, y, width: Math.max(1, slot * 0.8),
                                height: bh, fill: s.color, "data-series": s.name });
      const tip = svg("title");
      tip.textContent = `${label} ${s.name}: ${fmt(v, unit)}`;
      bar.append(tip);
      chart.append(bar);
    });
    const every = Math.ceil(labels.length / 8);
    if (i % every === 0) {
      const t = svg("text", { x: pad.l + (i + 0.5) * slot, y: h - pad.b + 16, "font-size": 10,
                              "text-anchor": "middle", fill: "#444" });
      t.textContent = label;
      chart.append(t);
    }
  });
  return chart;
}

function legend(series) {
  return el("div", { class: "legend" }, series.map((s) => {
    const swatch = svg("svg", { width: 12, height: 12 }, svg("rect", { width: 12, height: 12, fill: s.color }));
    return el("span", {}, swatch, s.name);
  }));
}

async function perDayChart() {
  const doc = await getJSON("/api/charts/records-per-day?days=14");
  const series = doc.series.map((s, i) => ({ name: s.name, values: s.counts,
                                             color: PALETTE[i % PALETTE.length] }));
  const labels = doc.days.map((d) => d.slice(5));
  const body = series.length
    ? [stackedBars("chart-per-day", labels, series, "records"), legend(series)]
    : [el("p", { class: "muted" }, "No sharing events or anchors yet.")];
  return card("Records per day per agency pair", { id: "card-per-day" },
    el("p", { class: "muted" }, "Sharing events provider→recipient; anchors per agency (block day, UTC)."),
    ...body);
}

async function latencyChart() {
  const doc = await getJSON("/api/charts/commit-latency?blocks=100");
  const labels = doc.points.map((p) => String(p.height));
  const series = [{ name: "interval since previous block", values: doc.points.map((p) => p.interval_ms),
                    color: LATENCY_COLOR }];
  const body = doc.points.length
    ? [stackedBars("chart-latency", labels, series, "ms"), legend(series)]
    : [el("p", { class: "muted" }, "Needs at least two blocks.")];
  return card("Commit latency (time between blocks)", { id: "card-latency" },
    el("p", { class: "muted" }, `Last ${doc.points.length} blocks, median ${doc.median_ms === null ? "—" : duration(doc.median_ms)}.`),
    ...body);
}

// --- pages -----------------------------------------------------------------------------

function checkpointCard(cp) {
  const verdict = cp.final
    ? el("span", { class: "ok" }, `final: signed by ${cp.signed_by.length} validators of membership ${cp.membership} (need ${cp.threshold})`)
    : el("span", { class: "bad" }, `NOT final: ${cp.signed_by.length} of ${cp.threshold} needed`);
  const rows = cp.signatures.map((s) => el("tr", {},
    el("td", {}, s.validator || `${s.name} (not a validator)`), mono(s.key_id),
    el("td", { class: s.verified ? "ok" : "bad" }, s.verified ? "verified" : "not counted")));
  return card("Latest checkpoint", { id: "checkpoint" },
    keyValues([["origin", cp.origin], ["tree size", String(cp.size)], ["root", cp.root],
               ["quorum", verdict]]),
    table(["signed by", "key id", "signature"], rows),
    el("p", {}, link("/api/checkpoint/note", "Download the signed checkpoint note")));
}

function blockRows(blocks) {
  return blocks.map((b) => el("tr", { "data-height": b.height },
    el("td", {}, link(`#/block/${b.height}`, String(b.height))), el("td", {}, when(b.time_ms)),
    el("td", {}, String(b.record_count)), el("td", {}, String(b.tree_size)),
    el("td", {}, b.proposer), mono(short(b.hash))));
}

const BLOCK_HEADERS = ["height", "time (UTC)", "records", "tree size", "proposer", "hash"];

async function overview(main) {
  const status = await getJSON("/api/status");
  const grid = el("div", { class: "grid" });
  main.replaceChildren(grid);
  let cp;
  try { cp = checkpointCard(await getJSON("/api/checkpoint")); }
  catch (e) { cp = card("Latest checkpoint", {}, el("p", { class: "muted" }, e.message)); }
  grid.append(cp, card("Network", {}, keyValues([
    ["network", status.network], ["height", String(status.height)],
    ["records", String(status.tree_size)], ["head", status.head_hash],
    ["validators", status.validators.map((v) => v.agency || v.name).join(", ")],
    ["quorum", `${status.threshold} of ${status.validators.length}`]])));
  grid.append(await perDayChart(), await latencyChart());
  const blocks = await getJSON("/api/blocks?limit=10");
  grid.append(card("Latest blocks", { class: "card wide" },
    table(BLOCK_HEADERS, blockRows(blocks.blocks), { id: "latest-blocks" }),
    el("p", {}, link("#/blocks", "All blocks →"))));
}

async function blocksPage(main, params) {
  const before = params.get("before");
  const doc = await getJSON("/api/blocks?limit=50" + (before ? `&before=${encodeURIComponent(before)}` : ""));
  main.replaceChildren(card(`Blocks (head ${doc.head})`, {},
    table(BLOCK_HEADERS, blockRows(doc.blocks), { id: "blocks" }),
    el("div", { class: "pager" }, doc.next_before ? link(`#/blocks?before=${doc.next_before}`, "Older →") : "")));
}

function recordRows(records) {
  return records.map((r) => el("tr", { "data-record-index": r.index },
    el("td", {}, link(`#/record/${r.index}`, String(r.index))), el("td", {}, r.kind),
    el("td", {}, r.agency), el("td", {}, when(r.created_ms)), mono(short(r.record_id || "", 24))));
}

async function blockPage(main, height, params) {
  const offset = Number(params.get("offset") || 0);
  const b = await getJSON(`/api/blocks/${height}?offset=${offset}&limit=100`);
  const cert = b.certificate;
  const certText = cert ? (cert.error || `${cert.ok ? "valid" : "INVALID"}: ${cert.signed_by.join(", ")} (power ${cert.power}, need ${cert.threshold}), round ${cert.round}`) : "none stored";
  const next = offset + b.records.length < b.record_count
    ? link(`#/block/${height}?offset=${offset + b.records.length}`, "More records →") : "";
  main.replaceChildren(
    card(`Block ${b.height}`, { id: "block" }, keyValues([
      ["hash", b.hash], ["previous", b.prev_hash], ["time", when(b.time_ms)],
      ["proposer", b.proposer], ["records", String(b.record_count)],
      ["tree size", String(b.tree_size)], ["tree root", b.tree_root],
      ["commit certificate", certText],
      ["checkpoint", b.checkpoint ? `${b.checkpoint.final ? "final" : "NOT final"}, signed by ${b.checkpoint.signed_by.join(", ")}` : "none stored"]]),
      el("div", { class: "pager" },
        b.height > 1 ? link(`#/block/${b.height - 1}`, "← previous block") : "",
        link(`#/block/${b.height + 1}`, "next block →"))),
    card("Records", {}, table(["index", "kind", "agency", "created (UTC)", "record id"],
      recordRows(b.records), { id: "block-records" }), el("div", { class: "pager" }, next)));
}

function fieldValue(v) {
  if (Array.isArray(v)) return v.join(", ");
  if (v !== null && typeof v === "object") return JSON.stringify(v);
  return String(v);
}

async function recordPage(main, index) {
  const r = await getJSON(`/api/records/${index}`);
  const fields = Object.entries(r.fields).map(([k, v]) => [k, fieldValue(v)]);
  const receiptBox = el("pre", { id: "receipt" }, "loading receipt…");
  main.replaceChildren(
    card(`Record ${r.index}: ${r.kind} by ${r.agency}`, { id: "record" }, keyValues([
      ["kind", r.kind], ["agency", r.agency], ["block", r.height ? link(`#/block/${r.height}`, String(r.height)) : "—"],
      ["record id", r.record_id], ["leaf hash", r.leaf_hash], ["created (author's clock)", when(r.created_ms)],
      ["signer", r.signer], ["signature", el("td", { class: r.signature === "valid" ? "ok" : "bad" }, r.signature)],
      ["nonce", r.nonce], ["network", r.network]])),
    card(`Fields of the ${r.kind}`, {}, keyValues(fields)),
    card("Receipt (C2SP tlog-proof@v1)", {},
      el("p", {}, link(r.receipt_url, `Download record-${r.index}.tlog-proof`), " · ",
        link(r.envelope_url, `Download record-${r.index}.bin (the exact signed envelope)`)),
      el("p", { class: "muted" }, "Check it offline, trusting only the genesis:"),
      el("pre", {}, `shadowledger audit verify-receipt record-${r.index}.tlog-proof --record record-${r.index}.bin --trust genesis.json`),
      receiptBox));
  try {
    const response = await fetch(r.receipt_url);
    receiptBox.textContent = response.ok ? await response.text() : (await response.json()).error;
  } catch (e) { receiptBox.textContent = e.message; }
}

async function agreementsPage(main, params) {
  const offset = Number(params.get("offset") || 0);
  const doc = await getJSON(`/api/agreements?offset=${offset}&limit=100`);
  const rows = doc.agreements.map((a) => el("tr", { "data-agreement": a.record_id },
    el("td", {}, link(`#/record/${a.index}`, String(a.index))), el("td", {}, a.provider),
    el("td", {}, a.recipient), el("td", {}, a.datasets.join(", ")), el("td", {}, a.purpose),
    el("td", {}, a.legal_basis), el("td", {}, `${when(a.valid_from_ms)} – ${a.valid_until_ms ? when(a.valid_until_ms) : "open"}`),
    el("td", { class: a.state === "active" ? "ok" : "bad" },
      a.revoked ? `revoked by ${a.revoked_by} (record ${a.revoked_index}${a.revoked_reason ? ": " + a.revoked_reason : ""})` : a.state)));
  const next = offset + doc.agreements.length < doc.total
    ? link(`#/agreements?offset=${offset + doc.agreements.length}`, "More →") : "";
  main.replaceChildren(card(`Sharing agreements (${doc.total})`, {},
    table(["record", "provider", "recipient", "datasets", "purpose", "legal basis", "valid", "state"],
      rows, { id: "agreements" }), el("div", { class: "pager" }, next)));
}

async function membershipPage(main) {
  const m = await getJSON("/api/membership");
  const transitions = m.transitions.map((t) => el("tr", { "data-membership": t.number },
    el("td", {}, String(t.number)), el("td", {}, link(`#/block/${t.height}`, String(t.height))),
    el("td", {}, String(t.tree_size)), el("td", {}, t.summary),
    el("td", {}, t.approvers.join(", ")),
    el("td", {}, [...t.validators_added.map((v) => "+" + v), ...t.validators_removed.map((v) => "−" + v)].join(" ") || "—"),
    el("td", {}, [...t.record_keys_added.map((k) => "+" + k), ...t.record_keys_removed.map((k) => "−" + k)].join(" ") || "—"),
    el("td", {}, t.proposal_index === null ? short(t.proposal_id) : link(`#/record/${t.proposal_index}`, short(t.proposal_id)))));
  const pending = m.pending.map((p) => el("tr", {},
    mono(short(p.proposal_id)), el("td", {}, p.author), el("td", {}, p.summary),
    el("td", {}, `${p.approvers.join(", ")} (${p.approvers.length} of ${p.needed})`), el("td", {}, when(p.expires_ms))));
  main.replaceChildren(
    card(`Membership in force: ${m.number}`, { id: "membership" }, keyValues([
      ["hash", m.hash],
      ["validators", m.validators.map((v) => `${v.agency || v.name} (${v.power})`).join(", ")],
      ["quorum", `${m.threshold} of ${m.validators.length}`],
      ["agencies", m.agencies.map((a) => `${a.name} (${a.role})`).join(", ")],
      ["approvals needed", String(m.approvals)]]),
      el("p", {}, link(m.chain_url, "Download the membership chain"), " (verify receipts past a change with ",
        el("code", {}, "audit verify-receipt … --chain membership-chain.json"), ")")),
    card(`Transitions (${m.transitions.length})`, {},
      table(["membership", "adopted in block", "tree size", "summary", "approved by", "validators", "record keys", "proposal"],
        transitions, { id: "transitions" })),
    card(`Pending proposals (${m.pending.length})`, {},
      table(["proposal", "author", "summary", "approvals", "expires (UTC)"], pending, { id: "pending" })));
}

// --- routing ---------------------------------------------------------------------------

async function route() {
  const main = document.getElementById("main");
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts.length === 0) await overview(main);
    else if (parts[0] === "blocks") await blocksPage(main, params);
    else if (parts[0] === "block" && /^\d+$/.test(parts[1] || "")) await blockPage(main, parts[1], params);
    else if (parts[0] === "record" && /^\d+$/.test(parts[1] || "")) await recordPage(main, parts[1]);
    else if (parts[0] === "agreements") await agreementsPage(main, params);
    else if (parts[0] === "membership") await membershipPage(main);
    else throw new Error(`no page ${path}`);
  } catch (e) {
    main.replaceChildren(el("p", { class: "error" }, e.message));
  }
  document.body.setAttribute("data-ready", "1");
}

async function search(event) {
  event.preventDefault();
  const q = document.getElementById("search-input").value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(q)) {
    try { location.hash = `#/record/${(await getJSON(`/api/records/by-id/${q}`)).index}`; }
    catch (e) { document.getElementById("main").replaceChildren(el("p", { class: "error" }, e.message)); }
  } else if (/^r\d+$/i.test(q)) location.hash = `#/record/${q.slice(1)}`;
  else if (/^\d+$/.test(q)) location.hash = `#/block/${q}`;
}

async function start() {
  document.getElementById("search").addEventListener("submit", search);
  window.addEventListener("hashchange", route);
  try {
    const status = await getJSON("/api/status");
    document.getElementById("network").textContent = `${status.network} · height ${status.height}`;
  } catch (e) { /* the page below shows the error */ }
  await route();
}

document.addEventListener("DOMContentLoaded", start);
