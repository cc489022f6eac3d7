// Ember console: behaviour for the server-rendered pages. Everything received is written with
// textContent (never innerHTML), so names, results and exception text always show as text.
"use strict";
(function () {
  const keyed = document.body.dataset.keyed === "yes";
  const ROOT = document.body.dataset.root || "";  // where the app is mounted
  const keyInput = document.getElementById("gateway-key");
  const KEY = "ember-gateway-key";
  if (keyInput) {
    keyInput.value = sessionStorage.getItem(KEY) || "";
    keyInput.addEventListener("input", () => sessionStorage.setItem(KEY, keyInput.value));
  }
  const key = () => (keyInput ? keyInput.value : "");
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (keyed && key()) h["X-Pyro-Gateway-Key"] = key();
    return h;
  }
  const $ = (id) => document.getElementById(id);
  const pretty = (value) => JSON.stringify(value, null, 2);
  async function errorText(res) {
    const text = await res.text();
    try { const data = JSON.parse(text); if (data && data.error) return data.error; } catch (e) { /* not JSON */ }
    return text || res.statusText;
  }

  // ---- names page ------------------------------------------------------------------
  function filterTree(ul, needle) {
    let any = false;
    for (const li of ul.children) {
      const entry = li.querySelector(":scope > .entry");
      const sub = li.querySelector(":scope > details > ul");
      let show = !!entry && entry.dataset.name.toLowerCase().includes(needle);
      if (entry) entry.hidden = !show && !!sub;
      if (sub && filterTree(sub, needle)) show = true;
      li.hidden = !show;
      any = any || show;
    }
    return any;
  }
  const filter = $("filter");
  if (filter) {
    filter.addEventListener("input", () => {
      const tree = document.querySelector("#names > ul.tree");
      if (tree) filterTree(tree, filter.value.trim().toLowerCase());
    });
  }
  const pingAgain = $("ping-again");
  if (pingAgain) {
    pingAgain.addEventListener("click", async () => {
      const ping = $("ping");
      const res = await fetch(ROOT + "/console/ping");
      if (res.ok) {
        const data = await res.json();
        ping.textContent = "name server answered in " + data.ms.toFixed(1) + " ms";
        ping.className = "good";
      } else {
        ping.textContent = "name server not reachable: " + (await errorText(res));
        ping.className = "bad";
      }
    });
  }
  for (const button of document.querySelectorAll("button.remove")) {
    button.addEventListener("click", async () => {
      const name = button.dataset.name;
      const message = $("message");
      if (!confirm("Remove " + name + " from the name server?")) return;
      const res = await fetch(ROOT + "/console/remove", {
        method: "POST", body: JSON.stringify({ name: name }),
        headers: headers({ "Content-Type": "application/json" }),
      });
      if (res.ok) {
        button.closest(".entry").remove();
        message.textContent = "removed " + name;
        message.className = "good";
      } else {
        message.textContent = "could not remove " + name + ": " + (await errorText(res));
        message.className = "bad";
      }
    });
  }

  // ---- object page -----------------------------------------------------------------
  const title = $("object-name");
  const objectUrl = (member) =>
    ROOT + "/pyro/" + encodeURIComponent(title.dataset.name) + "/" + encodeURIComponent(member);
  function show(kind, heading, meta, text, traceback) {
    $("outcome").hidden = false;
    $("outcome").className = kind;
    $("outcome-title").textContent = heading;
    $("outcome-meta").textContent = meta;
    $("result").textContent = text;
    const tb = $("traceback");
    tb.hidden = !traceback;
    tb.textContent = traceback || "";
  }
  async function showResponse(res, started) {
    const ms = (performance.now() - started).toFixed(1) + " ms";
    const corr = res.headers.get("X-Pyro-Correlation-Id") || "";
    const meta = "HTTP " + res.status + ", " + ms + (corr ? ", correlation id " + corr : "");
    const type = res.headers.get("Content-Type") || "";
    if (res.status === 200 && type.startsWith("application/x-ndjson")) {
      const lines = (await res.text()).split("\n").filter((l) => l);
      show("ok", "Result (a stream of " + lines.length + " items)", meta, lines.map((l) => pretty(JSON.parse(l))).join("\n"));
    } else if (res.status === 200) {
      const text = await res.text();
      show("ok", "Result", meta, text ? pretty(JSON.parse(text)) : "(no result: oneway call)");
    } else if (res.status === 500) {
      const exc = await res.json();
      const args = (exc.args || []).map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(", ");
      const tb = exc.attributes && exc.attributes._pyroTraceback;
      show("error", "Remote exception", meta, exc.__class__ + ": " + args, Array.isArray(tb) ? tb.join("") : tb);
    } else {
      show("error", "Gateway refused the call", meta, await errorText(res));
    }
  }
  const form = $("call-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let args, kwargs;
      try {
        args = JSON.parse($("args").value || "[]");
        kwargs = JSON.parse($("kwargs").value || "{}");
      } catch (e) {
        show("error", "Invalid JSON", "not sent", String(e));
        return;
      }
      if (!Array.isArray(args)) { show("error", "Invalid arguments", "not sent", "positional arguments must be a JSON array"); return; }
      if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs)) {
        show("error", "Invalid arguments", "not sent", "keyword arguments must be a JSON object"); return;
      }
      const extra = { "Content-Type": "application/json", Accept: "application/json" };
      if ($("oneway").checked) extra["X-Pyro-Options"] = "oneway";
      const started = performance.now();
      const res = await fetch(objectUrl($("method").value), {
        method: "POST", body: JSON.stringify({ args: args, kwargs: kwargs }), headers: headers(extra),
      });
      await showResponse(res, started);
    });
  }
  for (const button of document.querySelectorAll("button.read")) {
    button.addEventListener("click", async () => {
      const started = performance.now();
      const res = await fetch(objectUrl(button.dataset.attr), { headers: headers() });
      await showResponse(res, started);
    });
  }

  // ---- events page -----------------------------------------------------------------
  const eventsForm = $("events-form");
  if (eventsForm) {
    let source = null;
    const status = $("events-status");
    const rows = document.querySelector("#events tbody");
    const stop = () => {
      if (source) source.close();
      source = null;
      $("unsubscribe").disabled = true;
      status.textContent = "not subscribed";
    };
    $("unsubscribe").addEventListener("click", stop);
    eventsForm.addEventListener("submit", (event) => {
      event.preventDefault();
      stop();
      const pattern = $("pattern").value;
      let url = ROOT + "/events/" + encodeURIComponent(pattern);
      if (keyed && key()) url += "?$key=" + encodeURIComponent(key());
      source = new EventSource(url);
      $("unsubscribe").disabled = false;
      status.textContent = "connecting…";
      source.onopen = () => { status.textContent = "subscribed to " + pattern; };
      source.onerror = () => { status.textContent = "connection lost or refused; retrying (is the event service running?)"; };
      source.onmessage = (msg) => {
        const ev = JSON.parse(msg.data);
        const tr = document.createElement("tr");
        tr.className = "event";
        const when = typeof ev.time === "number" ? new Date(ev.time * 1000).toISOString().slice(11, 23) : "";
        for (const value of [ev.seq, when, ev.subject, JSON.stringify(ev.message)]) {
          const td = document.createElement("td");
          td.textContent = value === undefined ? "" : String(value);
          tr.appendChild(td);
        }
        rows.insertBefore(tr, rows.firstChild);
        while (rows.children.length > 500) rows.removeChild(rows.lastChild);
      };
    });
  }
})();
