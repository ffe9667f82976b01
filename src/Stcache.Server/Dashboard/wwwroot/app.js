// stcache dashboard: polls /ui/api/cluster once a second and redraws. No dependencies, no build step.
(() => {
  "use strict";
  const POLL_MS = 1000;
  const HISTORY = 120;
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem("stcache-token") || "", previous: null, history: [], timeline: new Map(), lastLeader: undefined };

  $("token").value = state.token;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("stcache-token", state.token);
    poll();
  });

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.token) h["Authorization"] = "Bearer " + state.token;
    return h;
  }

  function text(el, value) { el.textContent = value; }
  function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function ms(seconds) { return seconds === null || seconds === undefined || !isFinite(seconds) ? "–" : (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1); }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i === 0 ? 0 : 1) + " " + units[i];
  }
  function clock(unixMs) { return new Date(unixMs).toLocaleTimeString("en-GB", { hour12: false }); }

  // Quantile of the observations between two cumulative bucket arrays (upper bound of the bucket that holds it).
  function quantile(bounds, before, after, q) {
    const delta = after.map((v, i) => v - (before ? before[i] || 0 : 0));
    const total = delta.reduce((a, b) => a + b, 0);
    if (total <= 0) return null;
    let seen = 0;
    for (let i = 0; i < delta.length; i++) {
      seen += delta[i];
      if (seen >= q * total) return i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
    }
    return bounds[bounds.length - 1];
  }

  function sumBuckets(list) {
    if (list.length === 0) return null;
    const out = list[0].slice();
    for (let k = 1; k < list.length; k++) list[k].forEach((v, i) => { out[i] += v; });
    return out;
  }

  async function poll() {
    let data;
    try {
      const response = await fetch("/ui/api/cluster", { headers: headers(), cache: "no-store" });
      if (response.status === 401) {
        showBanner("this cluster needs its API token: enter it above");
        return;
      }
      if (!response.ok) throw new Error(response.status + " " + (await response.text()));
      data = await response.json();
    } catch (err) {
      showBanner("the node serving this page does not answer: " + err.message);
      return;
    }
    hideBanner();
    render(data);
  }

  function showBanner(message) { const b = $("banner"); b.hidden = false; text(b, message); }
  function hideBanner() { $("banner").hidden = true; }

  function render(data) {
    const now = Date.now();
    const byId = new Map(data.members.map((m) => [m.id, m]));
    const leaderId = leaderOf(data);
    const leader = leaderId ? byId.get(leaderId) : null;
    const leaderNode = leader && leader.node ? leader.node : null;
    text($("leader"), leader ? leader.name : "none");
    $("leader").dataset.leaderId = leaderId || "";
    text($("term"), fmt(Math.max(0, ...data.members.filter((m) => m.node).map((m) => m.node.term))));
    const self = byId.get(data.self);
    text($("self"), self ? self.name : data.self);
    text($("updated"), "updated " + clock(now));

    renderMembers(data, leaderId, leaderNode);
    renderRates(data, now);
    renderTimeline(data, leaderId, byId, now);
  }

  // The leader is the member that reports itself leader at the highest term; a member that is down cannot lead.
  function leaderOf(data) {
    let best = null;
    for (const m of data.members) {
      if (m.node && m.node.role === "leader" && (!best || m.node.term > best.node.term)) best = m;
    }
    return best ? best.id : null;
  }

  function renderMembers(data, leaderId, leaderNode) {
    const body = $("members").querySelector("tbody");
    body.replaceChildren();
    const leaderCommit = leaderNode ? leaderNode.commit : Math.max(0, ...data.members.filter((m) => m.node).map((m) => m.node.commit));
    for (const m of data.members) {
      const n = m.node;
      const role = !n ? "down" : m.id === leaderId ? "leader" : n.role === "leader" ? "stale leader" : n.role;
      const row = document.createElement("tr");
      row.dataset.memberId = m.id;
      row.dataset.role = role;
      row.className = role === "down" ? "down" : "";
      const lag = n ? Math.max(0, leaderCommit - n.applied) : null;
      const peer = leaderNode && m.id !== leaderId ? (leaderNode.peers || []).find((p) => p.id === m.id) : null;
      const cells = [
        [m.name + (m.id === data.self ? " (this node)" : ""), ""],
        [m.id, "muted"],
        [null, ""],
        [n ? fmt(n.term) : "–", "num"],
        [n ? fmt(n.commit) : "–", "num"],
        [n ? fmt(n.applied) : "–", "num"],
        [lag === null ? "–" : fmt(lag), "num" + (lag > 100 ? " lagging" : "")],
        [m.id === leaderId ? "–" : peer && peer.lastContactMs !== null ? peer.lastContactMs + " ms" : (n ? "–" : "unreachable"), "num"],
        [peer && peer.roundTripMs !== null ? peer.roundTripMs.toFixed(2) + " ms" : "–", "num"],
        [n ? fmt(n.keys) : "–", "num"],
        [n ? bytes(n.memoryBytes) + (n.memoryLimitBytes ? " / " + bytes(n.memoryLimitBytes) : "") : "–", ""],
      ];
      for (const [value, cls] of cells) {
        const td = document.createElement("td");
        if (cls) td.className = cls;
        if (value === null) {
          const badge = document.createElement("span");
          badge.className = "role " + role.replace(" ", "-");
          badge.dataset.testid = "role";
          text(badge, role);
          td.appendChild(badge);
          if (!n && m.error) td.title = m.error;
        } else {
          text(td, value);
        }
        row.appendChild(td);
      }
      const actions = document.createElement("td");
      if (n && m.id !== leaderId && m.voter) actions.appendChild(button("make leader", () => act("POST", "/v1/cluster/transfer-leader?id=" + encodeURIComponent(m.id), null, "leadership moved to " + m.name)));
      actions.appendChild(button("remove", () => {
        if (confirm("Remove " + m.name + " (" + m.id + ") from the cluster?")) act("DELETE", "/v1/cluster/members/" + encodeURIComponent(m.id), null, m.name + " removed");
      }));
      row.appendChild(actions);
      body.appendChild(row);
    }
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    text(b, label);
    b.addEventListener("click", onClick);
    return b;
  }

  function renderRates(data, now) {
    const nodes = data.members.filter((m) => m.node);
    const sample = {
      at: now,
      requests: new Map(nodes.map((m) => [m.id, m.node.requests])),
      fsync: new Map(nodes.map((m) => [m.id, m.node.fsync])),
      expirations: nodes.reduce((a, m) => a + m.node.expirations, 0),
      evictions: nodes.reduce((a, m) => a + m.node.evictions, 0),
    };
    const prev = state.previous;
    state.previous = sample;
    const leaderKeys = nodes.find((m) => m.id === leaderOf(data));
    text($("keys"), leaderKeys ? fmt(leaderKeys.node.keys) : "–");
    renderMemory(nodes);
    if (!prev) return;
    const seconds = (now - prev.at) / 1000;
    let ops = 0; const before = []; const after = [];
    let syncs = 0; let worstFsync = null;
    for (const [id, r] of sample.requests) {
      const p = prev.requests.get(id);
      if (!p || r.count < p.count) continue; // a restarted node starts again from zero
      ops += r.count - p.count;
      before.push(p.buckets); after.push(r.buckets);
      const f = sample.fsync.get(id); const pf = prev.fsync.get(id);
      if (f && pf && f.count >= pf.count) {
        syncs += f.count - pf.count;
        const q = quantile(data.bounds, pf.buckets, f.buckets, 0.99);
        if (q !== null && (worstFsync === null || q > worstFsync)) worstFsync = q;
      }
    }
    const opsPerSecond = ops / seconds;
    const p50 = after.length ? quantile(data.bounds, sumBuckets(before), sumBuckets(after), 0.5) : null;
    const p99 = after.length ? quantile(data.bounds, sumBuckets(before), sumBuckets(after), 0.99) : null;
    text($("ops"), fmt(Math.round(opsPerSecond)));
    text($("p50"), ms(p50));
    text($("p99"), ms(p99));
    text($("fsync"), ms(worstFsync));
    text($("syncs"), fmt(Math.round(syncs / seconds)));
    text($("expirations"), fmt(Math.round(Math.max(0, sample.expirations - prev.expirations) / seconds)));
    text($("evictions"), fmt(Math.round(Math.max(0, sample.evictions - prev.evictions) / seconds)));
    state.history.push({ ops: opsPerSecond, p99: p99 || 0, fsync: worstFsync || 0 });
    if (state.history.length > HISTORY) state.history.shift();
    chart($("ops-chart"), [state.history.map((h) => h.ops), state.history.map((h) => h.p99)]);
    chart($("fsync-chart"), [state.history.map((h) => h.fsync)]);
  }

  function renderMemory(nodes) {
    const box = $("memory");
    box.replaceChildren();
    for (const m of nodes) {
      const limit = m.node.memoryLimitBytes;
      const used = m.node.memoryBytes;
      const label = document.createElement("div");
      text(label, m.name);
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = limit ? Math.min(100, (100 * used) / limit).toFixed(1) + "%" : "0%";
      const caption = document.createElement("span");
      text(caption, bytes(used) + (limit ? " of " + bytes(limit) + " (--max-memory)" : " (no --max-memory limit)"));
      bar.append(fill, caption);
      box.append(label, bar);
    }
  }

  // Each series is scaled to its own maximum; the first is drawn in blue, the second in amber.
  function chart(svg, series) {
    svg.replaceChildren();
    series.forEach((values, k) => {
      if (values.length < 2) return;
      const max = Math.max(...values) || 1;
      const points = values.map((v, i) => (i * 300 / (HISTORY - 1)).toFixed(1) + "," + (58 - (56 * v) / max).toFixed(1)).join(" ");
      const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", points);
      if (k > 0) line.setAttribute("class", "second");
      svg.appendChild(line);
    });
  }

  // Leader changes the members remember, plus the ones this page saw between polls (including "no leader").
  function renderTimeline(data, leaderId, byId, now) {
    for (const m of data.members) {
      for (const e of (m.node && m.node.events) || []) {
        const key = e.term + ":" + e.leader;
        if (!state.timeline.has(key)) state.timeline.set(key, { at: e.at, term: e.term, leader: e.leader, leaderName: e.leaderName });
      }
    }
    if (leaderId !== state.lastLeader) {
      const term = leaderId ? byId.get(leaderId).node.term : null;
      const key = leaderId ? term + ":" + leaderId : "none:" + now;
      if (state.lastLeader !== undefined && !state.timeline.has(key)) {
        state.timeline.set(key, { at: now, term: term, leader: leaderId || "0", leaderName: leaderId ? byId.get(leaderId).name : null });
      }
      state.lastLeader = leaderId;
    }
    const list = $("timeline");
    list.replaceChildren();
    // Several members each saw "no leader" during one election: show one line per gap.
    const entries = [...state.timeline.values()].sort((a, b) => a.at - b.at)
      .filter((e, i, all) => !(e.leader === "0" && i > 0 && all[i - 1].leader === "0"))
      .reverse().slice(0, 50);
    for (const e of entries) {
      const li = document.createElement("li");
      const time = document.createElement("time");
      text(time, clock(e.at));
      li.appendChild(time);
      li.appendChild(document.createTextNode(e.leader === "0" ? "no leader" : (e.leaderName || e.leader) + " leads term " + e.term));
      list.appendChild(li);
    }
  }

  async function act(method, path, body, success) {
    const message = $("message");
    message.className = "message";
    text(message, method + " " + path + " …");
    try {
      const response = await fetch(path, {
        method,
        headers: headers(body ? { "Content-Type": "application/json" } : {}),
        body: body ? JSON.stringify(body) : "",
      });
      const answer = await response.text();
      if (!response.ok) {
        let reason = answer;
        try { reason = JSON.parse(answer).error || answer; } catch (_) { /* plain text */ }
        throw new Error(response.status + ": " + reason);
      }
      text(message, success);
    } catch (err) {
      message.className = "message error";
      text(message, "failed: " + err.message);
    }
    poll();
  }

  $("snapshot").addEventListener("click", () => act("POST", "/v1/snapshot", null, "snapshot taken"));
  $("add-learner").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const request = { raftAddress: form.get("raftAddress"), httpAddress: form.get("httpAddress") };
    if (form.get("name")) request.name = form.get("name");
    act("POST", "/v1/cluster/members", request, "learner " + (request.name || request.raftAddress) + " added; it becomes a voter once caught up");
  });

  poll();
  setInterval(poll, POLL_MS);
})();
