// Outpost console: fills each page from /ui/api/* (no framework, no external code). Charts
// are inline SVG drawn here.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const $ = (s) => document.querySelector(s);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
    return e;
  };
  const api = async (path) => {
    const r = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (r.status === 401) { location.href = "/ui/login"; throw new Error("signed out"); }
    return r.json();
  };
  const fmt = (n, d = 1) => n == null || isNaN(n) ? "–" : Number(n).toLocaleString(undefined, { maximumFractionDigits: d });
  const bytes = (n) => {
    if (n == null) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return fmt(n, 1) + " " + u[i];
  };
  const pct = (r) => r == null ? "–" : fmt(r * 100, 1) + " %";
  const time = (ms) => new Date(ms).toLocaleTimeString();
  const table = (t, head, rows) => {
    t.replaceChildren(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
  };
  const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2"];
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };

  // A line chart of `lines` ([{name, values}]) over times `t` (ms).
  function chart(box, t, lines, opts = {}) {
    box.replaceChildren();
    const all = lines.flatMap((l) => l.values).filter((v) => v != null);
    if (t.length < 1 || all.length === 0) {
      box.append(el("div", { class: "empty" }, "No data yet: the first samples arrive within an interval."));
      return;
    }
    const W = 600, H = 170, L = 52, R = 8, T = 8, B = 20;
    let max = opts.max != null ? opts.max : Math.max(...all);
    if (!(max > 0)) max = 1;
    const t0 = t[0], t1 = t[t.length - 1] === t0 ? t0 + 1 : t[t.length - 1];
    const x = (ts) => L + (W - L - R) * (ts - t0) / (t1 - t0);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    for (let i = 0; i <= 4; i++) {
      const v = max * i / 4, yy = y(v);
      s.append(svg("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e5e7eb" }));
      const lab = svg("text", { x: L - 4, y: yy + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7385" });
      lab.textContent = opts.label ? opts.label(v) : fmt(v, 2);
      s.append(lab);
    }
    const tl = svg("text", { x: L, y: H - 4, "font-size": 10, fill: "#6b7385" }); tl.textContent = time(t0); s.append(tl);
    const tr = svg("text", { x: W - R, y: H - 4, "font-size": 10, fill: "#6b7385", "text-anchor": "end" }); tr.textContent = time(t1); s.append(tr);
    lines.forEach((l, i) => {
      let d = "", pen = false;
      l.values.forEach((v, j) => {
        if (v == null) { pen = false; return; }
        d += (pen ? "L" : "M") + x(t[j]).toFixed(1) + "," + y(v).toFixed(1);
        pen = true;
      });
      if (d) s.append(svg("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.6 }));
      if (t.length === 1 && l.values[0] != null) s.append(svg("circle", { cx: x(t[0]), cy: y(l.values[0]), r: 3, fill: COLORS[i % COLORS.length] }));
    });
    box.append(s);
    const leg = el("div", { class: "legend" });
    lines.forEach((l, i) => { const sw = el("i"); sw.style.background = COLORS[i % COLORS.length]; leg.append(el("span", {}, sw, l.name)); });
    box.append(leg);
  }

  const last = (a) => a && a.length ? a[a.length - 1] : null;

  async function overview() {
    const sel = $("#series");
    let chosen = null;
    sel.addEventListener("change", () => { chosen = sel.value; draw(); });
    let data = null;
    function draw() {
      if (!data) return;
      const names = Object.keys(data.series);
      if (sel.options.length !== names.length) {
        sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
      }
      if (!chosen || !data.series[chosen]) chosen = names[0];
      if (chosen) sel.value = chosen;
      $("#health").replaceChildren(...data.health.map((h) =>
        el("div", { class: "card" }, el("div", { class: "k" }, h.tier + " health"),
          el("div", { class: "v " + (h.ready ? "ok" : "bad") }, h.ready ? "ready" : "unavailable"),
          h.reason ? el("div", { class: "k" }, h.reason) : "")));
      const r = chosen && data.series[chosen];
      $("#updated").textContent = `${data.samples} samples every ${data.interval_s}s · updated ${new Date().toLocaleTimeString()}`;
      if (!r) return;
      const card = (k, v) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
      $("#cards").replaceChildren(
        card("requests/s", fmt(last(r.rps), 2)), card("hit ratio", pct(last(r.hit_ratio))),
        card("bandwidth", bytes(last(r.bytes_per_s)) + "/s"), card("p50", fmt(last(r.p50_ms), 2) + " ms"),
        card("p95", fmt(last(r.p95_ms), 2) + " ms"), card("p99", fmt(last(r.p99_ms), 2) + " ms"),
        card("upstream errors/s", fmt(last(r.upstream_errors_per_s), 2)));
      chart($("#c-rps"), r.t, [{ name: "requests/s", values: r.rps }]);
      chart($("#c-hit"), r.t, [{ name: "hit ratio", values: r.hit_ratio }], { max: 1, label: (v) => fmt(v * 100, 0) + "%" });
      chart($("#c-bw"), r.t, [{ name: "bytes/s", values: r.bytes_per_s }], { label: bytes });
      chart($("#c-lat"), r.t, [{ name: "p50", values: r.p50_ms }, { name: "p95", values: r.p95_ms }, { name: "p99", values: r.p99_ms }]);
      chart($("#c-status"), r.t, ["1xx", "2xx", "3xx", "4xx", "5xx"].map((n, i) => ({ name: n, values: r.classes[i] })));
      chart($("#c-up"), r.t, [{ name: "upstream/s", values: r.upstream_per_s }, { name: "errors/s", values: r.upstream_errors_per_s }]);
      table($("#sites"), ["series", "requests", "hits", "misses", "pass", "errors", "hit ratio", "sent", "2xx", "3xx", "4xx", "5xx", "upstream", "upstream errors"],
        Object.entries(data.totals).map(([n, c]) => el("tr", {}, el("td", {}, n),
          ...[c.requests, c.hits, c.misses, c.passes, c.errors].map((v) => el("td", { class: "num" }, fmt(v, 0))),
          el("td", { class: "num" }, pct(c.hits + c.misses ? c.hits / (c.hits + c.misses) : null)),
          el("td", { class: "num" }, bytes(c.bytes)),
          ...c.classes.slice(1).map((v) => el("td", { class: "num" }, fmt(v, 0))),
          el("td", { class: "num" }, fmt(c.upstream_attempts, 0)), el("td", { class: "num" }, fmt(c.upstream_errors, 0)))));
    }
    const poll = async () => { try { data = await api("/ui/api/overview"); draw(); } catch (e) { /* next poll */ } };
    await poll();
    setInterval(poll, 5000);
  }

  const describe = (t) => {
    if (t === "all") return "everything";
    const [k, v] = Object.entries(t)[0] || ["?", []];
    return k + ": " + (Array.isArray(v) ? v.map((x) => x.host ? x.host + x.path : x).join(", ") : JSON.stringify(v));
  };

  async function purge() {
    const poll = async () => {
      const d = await api("/ui/api/purge-log");
      if (!d.enabled) { $("#purge-state").textContent = "Purge is not enabled on this node."; return; }
      $("#purge-state").textContent = `latest version ${d.latest} · applied here ${d.applied}` + (d.hub ? " · this node is the purge hub" : " · follows the purge hub");
      table($("#purge-log"), ["version", "accepted", "mode", "target"], d.events.map((e) =>
        el("tr", {}, el("td", { class: "num" }, e.version), el("td", {}, new Date(e.at_ms).toLocaleString()),
          el("td", {}, e.soft ? "soft" : "hard"), el("td", {}, describe(e.target)))));
    };
    await poll();
    setInterval(poll, 5000);
  }

  async function fleet() {
    const poll = async () => {
      const d = await api("/ui/api/fleet");
      const rows = [];
      const row = (n, extra) => {
        const tr = el("tr", { class: extra.stale ? "stale" : "" }, el("td", {}, n.node), el("td", {}, (n.roles || []).join(", ")),
          el("td", {}, n.region || "–"), el("td", {}, n.version), el("td", { class: "num" }, n.applied),
          el("td", { class: "num" }, extra.lag == null ? "–" : extra.lag),
          el("td", {}, el("span", { class: "badge " + (n.healthy ? "ok" : "bad") }, n.healthy ? "healthy" : "unhealthy: " + (n.reasons || []).join("; "))),
          el("td", {}, extra.seen), el("td", {}, extra.stale ? el("span", { class: "badge warn" }, "stale") : el("span", { class: "badge ok" }, "reporting")));
        rows.push(tr);
      };
      row(d.self, { lag: d.latest != null ? Math.max(0, d.latest - d.self.applied) : null, seen: "this node", stale: false });
      for (const n of d.nodes) row(n, { lag: n.lag, seen: n.last_seen_secs + " s ago", stale: n.stale });
      $("#fleet-note").textContent = d.hub ? `This node is the purge hub: every node following it reports here every few seconds (latest purge version ${d.latest}).`
        : "This node is not the purge hub: the hub's console lists the whole fleet.";
      table($("#fleet"), ["node", "roles", "region", "version", "purge applied", "lag", "health", "last seen", "state"], rows);
    };
    await poll();
    setInterval(poll, 5000);
  }

  async function cache() {
    const form = $("#inspect"), input = $("#url");
    const show = async (url) => {
      const out = $("#result");
      out.replaceChildren(el("p", { class: "muted" }, "Looking up…"));
      const r = await fetch("/ui/api/cache?url=" + encodeURIComponent(url), { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/ui/login"; return; }
      const d = await r.json();
      out.replaceChildren();
      if (d.error) { out.append(el("p", { class: "bad" }, d.error)); return; }
      out.append(el("p", {}, d.cached ? el("span", { class: "badge ok" }, "cached") : el("span", { class: "badge warn" }, "not cached"), " ", d.url));
      for (const n of d.nodes) {
        out.append(el("h2", {}, (n.tier || "node") + (n.site ? " · site " + n.site : "")));
        const entries = n.entries || [];
        if (!entries.length) { out.append(el("p", { class: "muted" }, "Nothing stored for this URL.")); continue; }
        for (const e of entries) {
          const rows = Object.entries(e).filter(([k]) => k !== "headers").map(([k, v]) =>
            el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v))));
          if (e.headers) rows.push(el("tr", {}, el("th", {}, "headers"), el("td", {}, el("pre", {}, typeof e.headers === "object" ? JSON.stringify(e.headers, null, 1) : String(e.headers)))));
          const t = el("table"); table(t, ["field", "value"], rows); out.append(t);
        }
      }
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); history.replaceState(null, "", "?url=" + encodeURIComponent(input.value)); show(input.value); });
    const q = new URLSearchParams(location.search).get("url");
    if (q) { input.value = q; await show(q); }
  }

  function live() {
    const form = $("#filters"), body = $("#live tbody"), state = $("#live-state");
    let src = null, dropped = 0;
    const MAX_ROWS = 200;
    const open = () => {
      if (src) src.close();
      const q = new URLSearchParams(new FormData(form)).toString();
      src = new EventSource("/ui/api/live?" + q);
      state.textContent = "connecting…";
      src.addEventListener("hello", () => { state.textContent = "watching"; });
      src.addEventListener("dropped", (ev) => { dropped += Number(ev.data); state.textContent = `watching · ${dropped} dropped (too slow)`; });
      src.addEventListener("request", (ev) => {
        const e = JSON.parse(ev.data);
        const cls = e.status >= 500 ? "bad" : e.status >= 400 ? "warn" : "";
        body.prepend(el("tr", {}, el("td", {}, time(e.time_ms)), el("td", {}, e.tier), el("td", {}, e.site), el("td", {}, e.method),
          el("td", {}, e.target), el("td", { class: "num " + cls }, e.status), el("td", {}, e.cache), el("td", { class: "num" }, e.bytes == null ? "–" : e.bytes),
          el("td", { class: "num" }, fmt(e.duration_ms, 2)), el("td", {}, e.client)));
        while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
      });
      src.onerror = () => { state.textContent = "reconnecting…"; };
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); body.replaceChildren(); open(); });
    open();
  }

  async function dns() {
    const poll = async () => {
      const d = await api("/ui/api/dns"), out = $("#dns");
      out.replaceChildren();
      if (!d.enabled) { out.append(el("p", { class: "muted" }, "No [dns] role runs on this node.")); return; }
      const kv = (title, obj, head, f) => {
        out.append(el("h2", {}, title));
        const t = el("table");
        table(t, head, Object.entries(obj).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", { class: "num" }, f ? f(v) : fmt(v, 0)))));
        out.append(t);
      };
      kv("Queries by transport", d.queries, ["transport", "queries"]);
      kv("Geo answers by region", d.answers_by_region, ["region", "answers"]);
      kv("Geo answers by name", d.answers_by_name, ["name", "answers"]);
      kv("Responses by code", d.responses, ["rcode", "responses"]);
      kv("Region health (endpoint probes)", d.endpoints, ["endpoint", "state"], (v) => v ? "up" : "down");
      out.append(el("p", { class: "muted" }, `ECS queries ${d.ecs_queries} · fail-open answers ${d.fail_open} · dropped ${d.dropped}`));
    };
    await poll();
    setInterval(poll, 5000);
  }

  async function config() {
    const d = await api("/ui/api/config");
    $("#config").textContent = d.config == null ? "No configuration to show." : JSON.stringify(d.config, null, 2);
  }

  const pages = { overview, purge, fleet, cache, live, dns, config };
  if (pages[page]) pages[page]();
})();
