// Ferry web console. Plain JavaScript, no build step: a hash router, a
// tiny DOM helper and one function per page, all talking to /api/.
"use strict";

// ---- helpers ----

// h builds an element: h("td", {class: "num"}, "42"). Children may be
// strings (set as text, never as HTML), elements, arrays or null.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  const add = (c) => {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(add);
    else el.append(c instanceof Node ? c : String(c));
  };
  children.forEach(add);
  return el;
}

const nf = new Intl.NumberFormat("en-US");
const nf1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
function num(n) { return n === null || n === undefined || n < 0 ? "–" : nf.format(n); }
function bytes(n) {
  if (n === null || n === undefined || n < 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? nf.format(n) : nf1.format(n)) + " " + units[i];
}
function perSec(n, unit) { return n === undefined || n === null ? "–" : nf1.format(n) + " " + unit + "/s"; }
function pad(n, w) { return String(n).padStart(w || 2, "0"); }
function when(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function enc(s) { return encodeURIComponent(s); }

// api calls the JSON API; a failure throws an Error carrying the
// server's message.
async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch("api/" + path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const err = new Error((data && data.error) || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

function showBanner(msg) {
  const b = document.getElementById("banner");
  b.textContent = msg || "";
  b.hidden = !msg;
}

// ---- router ----

// Each render gets a fresh page context; timers and stale answers of the
// page left behind are dropped.
let current = null;

function route() {
  if (current) current.stop();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const main = document.getElementById("main");
  main.replaceChildren();
  showBanner("");
  const page = new Page(main, params);
  current = page;
  let nav = "overview";
  if (parts[0] === "topics" && parts.length === 1) { nav = "topics"; topicsPage(page); }
  else if (parts[0] === "topics") { nav = "topics"; topicPage(page, parts[1], parts[2] || "partitions"); }
  else if (parts[0] === "groups" && parts.length === 1) { nav = "groups"; groupsPage(page); }
  else if (parts[0] === "groups") { nav = "groups"; groupPage(page, parts[1]); }
  else overviewPage(page);
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
}

class Page {
  constructor(root, params) {
    this.root = root;
    this.params = params;
    this.timers = [];
    this.stopped = false;
    this.cleanups = [];
  }
  stop() {
    this.stopped = true;
    this.timers.forEach(clearInterval);
    this.cleanups.forEach((f) => f());
  }
  every(ms, f) { this.timers.push(setInterval(() => { if (!this.stopped) f(); }, ms)); }
  // load runs an API call and hands its answer to f unless the page was
  // left meanwhile; errors go to the banner.
  async load(promise, f) {
    try {
      const data = await promise;
      if (!this.stopped) { showBanner(""); f(data); }
    } catch (e) {
      if (!this.stopped) showBanner(e.message);
    }
  }
  // link builds a hash URL for this page with params changed.
  link(path, changes) {
    const p = new URLSearchParams(this.params);
    for (const [k, v] of Object.entries(changes || {})) {
      if (v === null || v === undefined || v === "") p.delete(k); else p.set(k, v);
    }
    const q = p.toString();
    return "#" + path + (q ? "?" + q : "");
  }
}

function table(id, headers, rows, emptyText) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, headers.map((c) => {
      const [label, cls] = Array.isArray(c) ? c : [c, null];
      return h("th", { class: cls }, label);
    }))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: headers.length }, emptyText || "Nothing here."))));
}

function pager(page, path, pg, label) {
  const from = pg.total === 0 ? 0 : pg.offset + 1;
  const to = Math.min(pg.offset + pg.limit, pg.total);
  const prev = Math.max(0, pg.offset - pg.limit);
  return h("div", { class: "pager" },
    `${label} ${nf.format(from)}–${nf.format(to)} of ${nf.format(pg.total)}`,
    h("button", { disabled: pg.offset === 0, onclick: () => { location.hash = page.link(path, { offset: prev || null }); } }, "Previous"),
    h("button", { disabled: to >= pg.total, onclick: () => { location.hash = page.link(path, { offset: pg.offset + pg.limit }); } }, "Next"));
}

function card(label, value, id) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, value));
}

// ---- dialogs ----

// openDialog shows a modal built by build(close) and returns when it
// closes.
function openDialog(build) {
  const d = document.getElementById("dialog");
  const close = () => d.close();
  d.replaceChildren(build(close));
  d.showModal();
  const first = d.querySelector("input, select, textarea");
  if (first) first.focus();
}

// ---- overview ----

function overviewPage(page) {
  const cards = h("div", { class: "cards", id: "overview-cards" });
  const recChart = h("div", { class: "chart", id: "chart-records" }, h("div", { class: "title" }, "Records in / s"), h("div", { class: "empty" }, "Collecting samples…"));
  const byteChart = h("div", { class: "chart", id: "chart-bytes" }, h("div", { class: "title" }, "Bytes in / s"), h("div", { class: "empty" }, "Collecting samples…"));
  const top = h("div", { id: "top-topics" });
  const brokers = h("div", { id: "brokers" });
  page.root.append(h("h1", {}, "Cluster overview"), h("div", { class: "sub", id: "overview-sub" }, ""), cards,
    h("div", { class: "charts" }, recChart, byteChart), h("h2", {}, "Busiest topics"), top, h("h2", {}, "Brokers"), brokers);

  const charts = [];
  const makeChart = (box, label, fmt) => {
    const width = () => Math.max(300, box.clientWidth - 24);
    const u = new uPlot({
      width: width(), height: 200,
      series: [{}, { label, stroke: "#1f6feb", fill: "rgba(31,111,235,.12)", width: 2, value: (u, v) => v === null ? "–" : fmt(v) }],
      axes: [{}, { values: (u, vals) => vals.map(fmt), size: 70 }],
      scales: { y: { range: (u, lo, hi) => [0, Math.max(hi * 1.1, 1)] } },
      legend: { show: true },
    }, [[], []], box);
    const onResize = () => u.setSize({ width: width(), height: 200 });
    window.addEventListener("resize", onResize);
    page.cleanups.push(() => { window.removeEventListener("resize", onResize); u.destroy(); });
    return u;
  };
  const shortNum = (v) => v >= 1e6 ? nf1.format(v / 1e6) + "M" : v >= 1e3 ? nf1.format(v / 1e3) + "k" : nf1.format(v);
  const shortBytes = (v) => bytes(v).replace(" ", "");

  const draw = (points) => {
    if (points.length < 1) return;
    if (!charts.length) {
      recChart.querySelector(".empty").remove();
      byteChart.querySelector(".empty").remove();
      charts.push(makeChart(recChart, "records/s", shortNum), makeChart(byteChart, "bytes/s", shortBytes));
    }
    const xs = points.map((p) => p.t / 1000);
    charts[0].setData([xs, points.map((p) => p.records_per_sec)]);
    charts[1].setData([xs, points.map((p) => p.bytes_per_sec)]);
  };

  const refresh = () => page.load(api("GET", "cluster"), (c) => {
    document.getElementById("cluster-id").textContent = "cluster " + c.cluster_id;
    const groups = c.groups;
    cards.replaceChildren(
      card("Brokers", num(c.brokers.length)),
      card("Topics", num(c.topics), "overview-topics"),
      card("Partitions", num(c.partitions)),
      card("Groups", num(groups)),
      card("Records retained", c.sampled_at ? num(c.records) : "…", "overview-records"),
      card("Size on disk", c.sampled_at ? bytes(c.log_bytes) : "…"));
    document.getElementById("overview-sub").textContent =
      `Sampled every ${nf1.format(c.sample_interval_ms / 1000)} s while the console is open` + (c.sample_error ? ` (last sample failed: ${c.sample_error})` : "");
    draw(c.throughput);
    top.replaceChildren(table("top-topics-table", ["Topic", ["Records/s", "num"], ["Bytes/s", "num"]],
      c.top_topics.map((t) => h("tr", {},
        h("td", {}, h("a", { href: "#/topics/" + enc(t.topic) }, t.topic)),
        h("td", { class: "num" }, perSec(t.records_per_sec, "rec")),
        h("td", { class: "num" }, bytes(t.bytes_per_sec) + "/s"))),
      "No topic received records in the last samples."));
    brokers.replaceChildren(table("brokers-table", ["Node", "Host", "Port", "Rack", "Role"],
      c.brokers.map((b) => h("tr", {},
        h("td", { class: "num" }, b.node_id), h("td", { class: "mono" }, b.host), h("td", { class: "num" }, b.port),
        h("td", {}, b.rack || "–"), h("td", {}, b.node_id === c.controller ? h("span", { class: "badge ok" }, "controller") : "")))));
  });
  refresh();
  // The sampler takes a sample every interval; poll a little faster.
  page.every(2000, refresh);
}

// ---- topics ----

function topicsPage(page) {
  const q = page.params.get("q") || "";
  const internal = page.params.get("internal") === "true";
  const offset = Number(page.params.get("offset") || 0);
  const search = h("input", { type: "search", id: "topic-search", placeholder: "Filter topics", value: q });
  search.addEventListener("change", () => { location.hash = page.link("/topics", { q: search.value, offset: null }); });
  const box = h("input", { type: "checkbox", id: "show-internal", checked: internal });
  box.addEventListener("change", () => { location.hash = page.link("/topics", { internal: box.checked ? "true" : null, offset: null }); });
  const list = h("div", { id: "topics" });
  page.root.append(
    h("div", { class: "headline" }, h("h1", {}, "Topics"), h("span", { class: "spacer" }),
      h("button", { class: "primary", id: "create-topic", onclick: () => createTopicDialog() }, "Create topic")),
    h("div", { class: "toolbar" }, search, h("label", {}, box, " internal topics")),
    list);
  page.load(api("GET", `topics?q=${enc(q)}&internal=${internal}&offset=${offset}&limit=50`), (d) => {
    list.replaceChildren(
      table("topics-table", ["Topic", ["Partitions", "num"], ["Replicas", "num"], ["Records", "num"], ["Size", "num"], ["Records/s", "num"], ["Bytes/s", "num"]],
        d.topics.map((t) => h("tr", { "data-topic": t.name },
          h("td", {}, h("a", { href: "#/topics/" + enc(t.name) }, t.name), t.internal ? h("span", { class: "badge" }, "internal") : null,
            t.errors ? h("span", { class: "badge bad", title: "partitions whose offsets could not be listed" }, `${t.errors} unavailable`) : null),
          h("td", { class: "num" }, num(t.partitions)), h("td", { class: "num" }, num(t.replication_factor)),
          h("td", { class: "num" }, num(t.records)), h("td", { class: "num" }, bytes(t.log_bytes)),
          h("td", { class: "num" }, t.rate ? perSec(t.rate.records_per_sec, "rec") : "–"),
          h("td", { class: "num" }, t.rate ? bytes(t.rate.bytes_per_sec) + "/s" : "–"))),
        q ? "No topic matches." : "No topics yet."),
      pager(page, "/topics", d, "Topics"));
  });
}

function createTopicDialog() {
  openDialog((close) => {
    const name = h("input", { type: "text", id: "new-topic-name", placeholder: "orders", autocomplete: "off" });
    const parts = h("input", { type: "number", id: "new-topic-partitions", min: 1, value: 3 });
    const rf = h("input", { type: "number", id: "new-topic-rf", min: 1, value: 1 });
    const cfgs = h("textarea", { id: "new-topic-configs", rows: 3, placeholder: "retention.ms=604800000\ncleanup.policy=delete" });
    const err = h("div", { class: "error", id: "dialog-error" });
    const submit = h("button", { class: "primary", id: "confirm-create" }, "Create");
    submit.addEventListener("click", async () => {
      const configs = {};
      for (const line of cfgs.value.split("\n")) {
        const l = line.trim();
        if (!l) continue;
        const i = l.indexOf("=");
        if (i <= 0) { err.textContent = `config line "${l}" is not name=value`; return; }
        configs[l.slice(0, i).trim()] = l.slice(i + 1).trim();
      }
      submit.disabled = true;
      try {
        await api("POST", "topics", { name: name.value.trim(), partitions: Number(parts.value), replication_factor: Number(rf.value), configs });
        close();
        location.hash = "#/topics/" + enc(name.value.trim());
      } catch (e) {
        err.textContent = e.message;
        submit.disabled = false;
      }
    });
    return h("form", { method: "dialog", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "body" }, h("h3", {}, "Create topic"),
        h("label", { for: "new-topic-name" }, "Name"), name,
        h("label", { for: "new-topic-partitions" }, "Partitions"), parts,
        h("label", { for: "new-topic-rf" }, "Replication factor"), rf,
        h("label", { for: "new-topic-configs" }, "Configs (name=value, one a line)"), cfgs, err),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: close }, "Cancel"), submit));
  });
}

function deleteTopicDialog(topic) {
  openDialog((close) => {
    const typed = h("input", { type: "text", id: "confirm-name", autocomplete: "off" });
    const err = h("div", { class: "error", id: "dialog-error" });
    const submit = h("button", { class: "danger solid", id: "confirm-delete", disabled: true }, "Delete topic");
    typed.addEventListener("input", () => { submit.disabled = typed.value !== topic; });
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      try {
        await api("DELETE", `topics/${enc(topic)}?confirm=${enc(typed.value)}`);
        close();
        location.hash = "#/topics";
      } catch (e) {
        err.textContent = e.message;
        submit.disabled = false;
      }
    });
    return h("form", { method: "dialog", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "body" }, h("h3", {}, `Delete topic ${topic}?`),
        h("div", { class: "warning" }, "This deletes the topic and every record in it, for good. Consumers of it will fail."),
        h("label", { for: "confirm-name" }, "Type the topic's name to confirm"), typed, err),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: close }, "Cancel"), submit));
  });
}

function topicPage(page, topic, tab) {
  const base = "/topics/" + enc(topic);
  const head = h("div", {});
  const body = h("div", { id: "topic-body" });
  const tabs = h("div", { class: "tabs" },
    [["partitions", "Partitions"], ["records", "Records"], ["configs", "Configs"]].map(([t, label]) =>
      h("a", { href: "#" + base + (t === "partitions" ? "" : "/" + t), class: t === tab ? "active" : null, id: "tab-" + t }, label)));
  page.root.append(head, tabs, body);
  page.load(api("GET", "topics/" + enc(topic)), (t) => {
    head.replaceChildren(
      h("div", { class: "headline" }, h("h1", { id: "topic-name" }, t.name), t.internal ? h("span", { class: "badge" }, "internal") : null,
        h("span", { class: "spacer" }),
        h("button", { class: "danger", id: "delete-topic", onclick: () => deleteTopicDialog(t.name) }, "Delete topic")),
      h("div", { class: "sub mono" }, "id " + (t.id || "–")),
      h("div", { class: "cards" }, card("Partitions", num(t.partitions)), card("Replication factor", num(t.replication_factor)),
        card("Records", num(t.records), "topic-records"), card("Size", bytes(t.log_bytes)),
        card("Records/s", t.rate ? nf1.format(t.rate.records_per_sec) : "–")));
    if (tab === "configs") {
      body.replaceChildren(table("configs-table", ["Config", "Value", "Source"],
        t.configs.map((c) => h("tr", {},
          h("td", { class: "mono" }, c.name),
          h("td", { class: "mono" }, c.sensitive ? h("span", { class: "null" }, "(sensitive)") : c.value === null ? h("span", { class: "null" }, "null") : c.value),
          h("td", {}, c.default ? h("span", { class: "badge" }, c.source.toLowerCase().replaceAll("_", " ")) : h("span", { class: "badge ok" }, "set on topic"))))));
    }
  });
  if (tab === "records") recordsTab(page, topic, base, body);
  else if (tab !== "configs") partitionsTab(page, topic, base, body);
}

function partitionsTab(page, topic, base, body) {
  const offset = Number(page.params.get("offset") || 0);
  page.load(api("GET", `topics/${enc(topic)}/partitions?offset=${offset}&limit=100`), (d) => {
    body.replaceChildren(
      table("partitions-table", [["Partition", "num"], ["Leader", "num"], "Replicas", "In sync", ["Start offset", "num"], ["End offset", "num"], ["Records", "num"], ["Size", "num"], ""],
        d.partitions.map((p) => h("tr", {},
          h("td", { class: "num" }, p.partition), h("td", { class: "num" }, p.leader),
          h("td", {}, p.replicas.join(", ")), h("td", {}, p.isr.join(", ")),
          h("td", { class: "num" }, num(p.start_offset)), h("td", { class: "num" }, num(p.end_offset)),
          h("td", { class: "num" }, num(p.records)), h("td", { class: "num" }, bytes(p.log_bytes)),
          h("td", {}, p.error ? h("span", { class: "badge bad" }, p.error) : h("a", { href: `#${base}/records?partition=${p.partition}&from=oldest` }, "Browse")))),
        "This topic has no partitions."),
      pager(page, base, d, "Partitions"));
  });
}

// ---- records ----

function decodeB64(s) {
  const bin = atob(s || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hexdump(b) {
  const lines = [];
  for (let i = 0; i < b.length; i += 16) {
    const row = Array.from(b.slice(i, i + 16));
    const hex = row.map((x) => pad(x.toString(16), 2)).join(" ");
    const txt = row.map((x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : ".")).join("");
    lines.push(`${pad(i.toString(16), 6)}  ${hex.padEnd(47)}  ${txt}`);
  }
  return lines.join("\n");
}

// render returns the text of a key, value or header value in a format:
// json (pretty), compact (JSON on one line), text or hex; auto picks
// compact JSON, then text, then hex.
function render(v, format) {
  const raw = decodeB64(v.data);
  let f = format;
  if (f === "auto") f = v.json ? "compact" : v.utf8 ? "text" : "hex";
  if (f === "json" || f === "compact") {
    try { return JSON.stringify(JSON.parse(new TextDecoder().decode(raw)), null, f === "json" ? 2 : 0); }
    catch (e) { f = "text"; }
  }
  if (f === "text") return new TextDecoder("utf-8", { fatal: false }).decode(raw);
  return hexdump(raw);
}

// showBytes renders a key or value as a block.
function showBytes(v, format) {
  if (v === null || v === undefined) return h("span", { class: "null" }, "null");
  if (v.size === 0) return h("span", { class: "null" }, "empty");
  return h("div", {}, h("pre", { class: "val" }, render(v, format)),
    v.truncated ? h("div", { class: "null" }, `first ${bytes(atob(v.data).length)} of ${bytes(v.size)}`) : null);
}

// showHeader renders one header on a line.
function showHeader(x, format) {
  const v = x.value;
  const val = v === null ? h("span", { class: "null" }, "null") : v.size === 0 ? h("span", { class: "null" }, "empty") :
    h("span", { class: "mono" }, render(v, format === "auto" ? (v.utf8 ? "text" : "hex") : format));
  return h("div", {}, h("span", { class: "k" }, x.key + ": "), val);
}

function recordsTab(page, topic, base, body) {
  const p = page.params;
  const partition = h("input", { type: "number", id: "rec-partition", min: 0, value: p.get("partition") || 0, style: "width:90px" });
  const from = h("select", { id: "rec-from" },
    [["newest", "Newest"], ["oldest", "Oldest"], ["offset", "From offset"], ["time", "From time"]].map(([v, l]) => h("option", { value: v }, l)));
  const mode = p.get("offset") ? "offset" : p.get("time") ? "time" : (p.get("from") || "newest");
  from.value = mode;
  const offset = h("input", { type: "number", id: "rec-offset", min: 0, value: p.get("offset") || 0, style: "width:120px" });
  const time = h("input", { type: "datetime-local", id: "rec-time", step: 1 });
  if (p.get("time")) {
    const d = new Date(Number(p.get("time")));
    time.value = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  const limit = h("select", { id: "rec-limit" }, [20, 50, 100, 500].map((n) => h("option", { value: n }, n + " records")));
  limit.value = p.get("limit") || 50;
  const format = h("select", { id: "rec-format" }, [["auto", "Auto"], ["text", "Text"], ["json", "JSON"], ["hex", "Hex"]].map(([v, l]) => h("option", { value: v }, l)));
  // Auto shows JSON compact on one line; JSON pretty-prints it.
  format.value = p.get("format") || "auto";
  const sync = () => { offset.hidden = from.value !== "offset"; time.hidden = from.value !== "time"; };
  from.addEventListener("change", sync);
  sync();
  const go = (extra) => {
    const q = { partition: partition.value, limit: limit.value, format: format.value === "auto" ? null : format.value, from: null, offset: null, time: null };
    if (from.value === "offset") q.offset = offset.value;
    else if (from.value === "time") q.time = time.value ? String(new Date(time.value).getTime()) : null;
    else q.from = from.value;
    Object.assign(q, extra || {});
    location.hash = page.link(base + "/records", q);
  };
  format.addEventListener("change", () => go());
  const results = h("div", { id: "records" });
  body.replaceChildren(
    h("div", { class: "toolbar" }, h("label", {}, "Partition "), partition, from, offset, time, limit,
      h("button", { class: "primary", id: "rec-load", onclick: () => go() }, "Show"),
      h("span", { class: "spacer" }), h("label", {}, "Format "), format),
    results);

  let q = `partition=${enc(partition.value)}&limit=${enc(limit.value)}`;
  if (mode === "offset") q += `&offset=${enc(p.get("offset"))}`;
  else if (mode === "time") q += `&time=${enc(p.get("time"))}`;
  else q += `&from=${enc(mode)}`;
  page.load(api("GET", `topics/${enc(topic)}/records?${q}`), (d) => {
    const fmt = format.value;
    const n = Number(limit.value);
    const older = Math.max(d.start_offset, d.from - n);
    results.replaceChildren(
      h("div", { class: "pager" },
        `Partition ${d.partition}: offsets ${num(d.start_offset)} to ${num(d.end_offset)}; showing ${nf.format(d.records.length)} from ${num(d.from)}`,
        h("button", { id: "rec-older", disabled: d.from <= d.start_offset, onclick: () => go({ offset: String(older), from: null, time: null }) }, "Older"),
        h("button", { id: "rec-newer", disabled: d.next_offset >= d.end_offset, onclick: () => go({ offset: String(d.next_offset), from: null, time: null }) }, "Newer")),
      table("records-table", [["Offset", "num"], "Timestamp", "Key", "Value", "Headers"],
        d.records.map((r) => h("tr", { "data-offset": r.offset },
          h("td", { class: "num mono" }, r.offset),
          h("td", { class: "mono" }, when(r.timestamp)),
          h("td", { style: "max-width:220px" }, showBytes(r.key, fmt)),
          h("td", {}, showBytes(r.value, fmt)),
          h("td", { class: "hdrs" }, r.headers.length ? r.headers.map((x) => showHeader(x, fmt)) : h("span", { class: "null" }, "none")))),
        "No records here."));
  });
}

// ---- groups ----

function stateBadge(state) {
  const cls = state === "Stable" ? "ok" : state === "Empty" || state === "Dead" ? "" : "warn";
  return h("span", { class: "badge " + cls }, state || "unknown");
}

function groupsPage(page) {
  const kind = page.params.get("type") || "";
  const q = page.params.get("q") || "";
  const offset = Number(page.params.get("offset") || 0);
  const search = h("input", { type: "search", id: "group-search", placeholder: "Filter groups", value: q });
  search.addEventListener("change", () => { location.hash = page.link("/groups", { q: search.value, offset: null }); });
  const tabs = h("div", { class: "tabs" },
    [["", "All"], ["classic", "Classic"], ["consumer", "Consumer (KIP-848)"], ["share", "Share"]].map(([t, label]) =>
      h("a", { href: page.link("/groups", { type: t || null, offset: null }), class: t === kind ? "active" : null }, label)));
  const list = h("div", { id: "groups" });
  page.root.append(h("h1", {}, "Groups"), tabs, h("div", { class: "toolbar" }, search), list);
  const refresh = () => page.load(api("GET", `groups?q=${enc(q)}&type=${enc(kind)}&offset=${offset}&limit=50`), (d) => {
    const rows = d.groups.map((g) => h("tr", { "data-group": g.group },
      h("td", {}, h("a", { href: "#/groups/" + enc(g.group) }, g.group)),
      h("td", {}, g.type), h("td", {}, stateBadge(g.state)),
      h("td", { class: "num" }, num(g.members.length)),
      h("td", { class: "num" }, g.lag_known ? num(g.lag) : "–"),
      h("td", {}, g.topics.join(", ") || "–"),
      h("td", { class: "num" }, g.coordinator)));
    const empty = kind === "share"
      ? (q ? "No share group matches." : "No share groups yet. A share group (KIP-932: records acknowledged one by one, redelivered when not) appears when a share consumer joins it.")
      : q ? "No group matches." : "No groups yet: they appear when a consumer joins one or commits offsets.";
    list.replaceChildren(table("groups-table", ["Group", "Type", "State", ["Members", "num"], ["Lag", "num"], "Topics", ["Coordinator", "num"]], rows, empty),
      pager(page, "/groups", d, "Groups"));
  });
  refresh();
  page.every(5000, refresh);
}

function groupPage(page, group) {
  const base = "/groups/" + enc(group);
  const offset = Number(page.params.get("offset") || 0);
  const head = h("div", {});
  const body = h("div", {});
  const live = h("input", { type: "checkbox", id: "group-live", checked: true });
  page.root.append(head, body);
  const refresh = () => page.load(api("GET", `groups/${enc(group)}?offset=${offset}&limit=100`), (g) => {
    // A share group (KIP-932) has start offsets instead of committed
    // offsets, and a partition may be assigned to several members.
    const share = g.type === "share";
    head.replaceChildren(...[
      h("div", { class: "headline" }, h("h1", { id: "group-name" }, g.group), h("span", { class: "badge", id: "group-type" }, g.type), stateBadge(g.state),
        h("span", { class: "spacer" }), h("label", { class: "live" }, live, "live"),
        h("button", { id: "reset-offsets", onclick: () => resetDialog(g, () => refresh()) }, share ? "Reset start offsets" : "Reset offsets"),
        h("button", { class: "danger", id: "delete-group", onclick: () => deleteGroupDialog(g) }, "Delete group")),
      h("div", { class: "sub" }, share ? `share group, assignor ${g.protocol || "–"}, coordinator ${g.coordinator}` : `protocol ${g.protocol_type || "–"} / ${g.protocol || "–"}, coordinator ${g.coordinator}`),
      g.error ? h("div", { class: "note" }, g.error) : null,
      h("div", { class: "cards" }, card("Members", num(g.members.length), "group-members"),
        card("Lag", g.lag_known ? num(g.lag) : "–", "group-lag"), card("Partitions", num(g.total)),
        card("Topics", num(g.topics.length)))].filter(Boolean));
    const subscribed = g.type !== "classic";
    body.replaceChildren(...[
      h("h2", {}, "Lag by topic"),
      table("topic-lag-table", ["Topic", ["Partitions", "num"], ["Lag", "num"]],
        g.topic_lag.map((t) => h("tr", {}, h("td", {}, h("a", { href: "#/topics/" + enc(t.topic) }, t.topic)), h("td", { class: "num" }, num(t.partitions)), h("td", { class: "num" }, num(t.lag)))),
        share ? "The group has no start offsets and no assignment." : "The group has no offsets and no assignment."),
      h("h2", {}, "Members"),
      table("members-table", ["Member", "Client", "Host", subscribed ? "Subscribed" : null, "Assignment"].filter(Boolean),
        g.members.map((m) => h("tr", { "data-member": m.member_id },
          h("td", { class: "mono" }, m.member_id, m.instance_id ? h("div", { class: "null" }, "instance " + m.instance_id) : null),
          h("td", {}, m.client_id), h("td", { class: "mono" }, m.host),
          subscribed ? h("td", {}, (m.subscribed || []).join(", ") || "–") : null,
          h("td", {}, m.assignment.length ? m.assignment.map((a) => h("div", {}, h("b", {}, a.topic), ` ${a.partitions} (${a.count})`)) :
            h("span", { class: "null" }, "nothing assigned")))),
        "No active members."),
      h("h2", {}, share ? "Start offsets" : "Offsets"),
      share ? h("div", { class: "sub" }, "Below its start offset every record of a partition is done with; the lag counts the records from there to the end of the log not yet acknowledged (delivered and in flight, or waiting).") : null,
      table("offsets-table", ["Topic", ["Partition", "num"], [share ? "Start offset" : "Committed", "num"], ["Log start", "num"], ["Log end", "num"], ["Lag", "num"], share ? "Members" : "Member"],
        g.offsets.map((o) => h("tr", {},
          h("td", {}, o.topic), h("td", { class: "num" }, o.partition), h("td", { class: "num" }, num(o.committed)),
          h("td", { class: "num" }, num(o.start)), h("td", { class: "num" }, num(o.end)),
          h("td", { class: "num" }, o.error ? h("span", { class: "badge bad" }, o.error) : num(o.lag)),
          h("td", { class: "mono" }, o.member ? o.member.split(",").map((id) => h("div", {}, id)) : "–"))),
        share ? "No state yet: a partition gets a start offset when a member first fetches from it." : "Nothing committed."),
      pager(page, base, g, "Partitions"),
      share ? h("h2", {}, "Configs") : null,
      share && g.configs_error ? h("div", { class: "note" }, g.configs_error) : null,
      share && g.configs ? table("group-configs-table", ["Config", "Value", "Source"],
        g.configs.map((c) => h("tr", {},
          h("td", { class: "mono" }, c.name),
          h("td", { class: "mono" }, c.sensitive ? h("span", { class: "null" }, "(sensitive)") : c.value === null ? h("span", { class: "null" }, "none") : c.value),
          h("td", {}, c.default ? h("span", { class: "badge" }, c.source.toLowerCase().replaceAll("_", " ")) : h("span", { class: "badge ok" }, "set on group"))))) : null,
    ].filter(Boolean));
  });
  refresh();
  page.every(2000, () => { if (live.checked) refresh(); });
}

function deleteGroupDialog(g) {
  openDialog((close) => {
    const typed = h("input", { type: "text", id: "confirm-group", autocomplete: "off" });
    const err = h("div", { class: "error", id: "dialog-error" });
    const submit = h("button", { class: "danger solid", id: "confirm-delete-group", disabled: true }, "Delete group");
    typed.addEventListener("input", () => { submit.disabled = typed.value !== g.group; });
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      try {
        await api("DELETE", `groups/${enc(g.group)}?confirm=${enc(typed.value)}`);
        close();
        location.hash = g.type === "share" ? "#/groups?type=share" : "#/groups";
      } catch (e) {
        err.textContent = e.message;
        submit.disabled = false;
      }
    });
    return h("form", { method: "dialog", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "body" }, h("h3", {}, `Delete group ${g.group}?`),
        h("div", { class: "warning" }, g.type === "share"
          ? "This deletes the share group with its start offsets and the state of its records in flight. It can be deleted only while it has no members."
          : "This deletes the group and its committed offsets. It can be deleted only while it has no members."),
        h("label", { for: "confirm-group" }, "Type the group's name to confirm"), typed, err),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: close }, "Cancel"), submit));
  });
}

function resetDialog(g, done) {
  const share = g.type === "share";
  openDialog((close) => {
    const to = h("select", { id: "reset-to" },
      [["earliest", "Earliest offset"], ["latest", "Latest offset"], ["offset", "A given offset"], ["time", "A given time"], ["shift", "Shift by"]].map(([v, l]) => h("option", { value: v }, l)));
    const value = h("input", { type: "number", id: "reset-value", value: 0 });
    const time = h("input", { type: "datetime-local", id: "reset-time", step: 1 });
    const topics = h("input", { type: "text", id: "reset-topics", placeholder: share ? "every topic the group has start offsets for" : "every topic the group has committed to", value: "" });
    const err = h("div", { class: "error", id: "dialog-error" });
    const planBox = h("div", { class: "plan", id: "reset-plan" });
    const preview = h("button", { id: "reset-preview" }, "Preview");
    const apply = h("button", { class: "danger solid", id: "reset-confirm", disabled: true }, "Reset offsets");
    const sync = () => { value.hidden = !["offset", "shift"].includes(to.value); time.hidden = to.value !== "time"; apply.disabled = true; planBox.replaceChildren(); };
    to.addEventListener("change", sync);
    [value, time, topics].forEach((el) => el.addEventListener("input", () => { apply.disabled = true; }));
    sync();
    const body = (execute) => ({
      to: to.value,
      topics: topics.value.split(",").map((s) => s.trim()).filter(Boolean),
      offset: to.value === "offset" ? Number(value.value) : 0,
      shift: to.value === "shift" ? Number(value.value) : 0,
      time: to.value === "time" && time.value ? String(new Date(time.value).getTime()) : "",
      execute,
    });
    const run = async (execute) => {
      err.textContent = "";
      preview.disabled = apply.disabled = true;
      try {
        const r = await api("POST", `groups/${enc(g.group)}/reset-offsets`, body(execute));
        planBox.replaceChildren(
          h("div", {}, execute ? (share ? `Moved the start offsets of ${nf.format(r.total - r.failed)} of ${nf.format(r.total)} partitions.` : `Committed new offsets for ${nf.format(r.total - r.failed)} of ${nf.format(r.total)} partitions.`) : `${nf.format(r.total)} partitions would move:`),
          table("reset-plan-table", ["Topic", ["Partition", "num"], ["Current", "num"], ["New", "num"]],
            r.plan.slice(0, 200).map((x) => h("tr", {}, h("td", {}, x.topic), h("td", { class: "num" }, x.partition), h("td", { class: "num" }, num(x.current)), h("td", { class: "num" }, num(x.new), x.error ? h("span", { class: "badge bad" }, x.error) : null)))));
        if (execute) {
          apply.textContent = "Done";
          done();
        } else {
          apply.disabled = false;
          apply.textContent = `Reset ${nf.format(r.total)} partitions`;
        }
      } catch (e) {
        err.textContent = e.message;
      }
      preview.disabled = false;
    };
    preview.addEventListener("click", () => run(false));
    apply.addEventListener("click", () => run(true));
    return h("form", { method: "dialog", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "body" }, h("h3", {}, share ? `Reset start offsets of share group ${g.group}` : `Reset offsets of ${g.group}`),
        h("div", { class: "warning" }, share
          ? "Start offsets can be reset only while the share group has no members. Records before the new start offset are not delivered, and the state of records in flight is dropped. Preview the plan, then confirm it."
          : "Offsets can be reset only while the group has no active members. Preview the plan, then confirm it."),
        h("label", { for: "reset-to" }, share ? "Move start offsets to" : "Move committed offsets to"), to, value, time,
        h("label", { for: "reset-topics" }, "Topics (comma-separated)"), topics, err, planBox),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: close }, "Close"), preview, apply));
  });
}

window.addEventListener("hashchange", route);
route();
