// Weft dashboard: live updates and small conveniences. Loaded with
// "defer" from the dashboard's own origin (script-src 'self'); no inline
// script anywhere.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base || "";
  var live = body.dataset.live || "";
  var statusEl = document.getElementById("live-status");
  var toggle = document.getElementById("live-toggle");
  var paused = localStorage.getItem("weft.live.paused") === "1";
  var source = null, pollTimer = null, failures = 0, pending = false, lastRefresh = 0, refreshTimer = null;

  function setStatus(text, cls) {
    if (!statusEl) { return; }
    statusEl.textContent = text;
    statusEl.className = "live " + (cls || "");
  }

  // refresh reloads the page's live part in place, keeping selections.
  function refresh() {
    var region = document.getElementById("live");
    if (!region || paused) { return; }
    var now = Date.now();
    if (now - lastRefresh < 1000) {
      if (!refreshTimer) { refreshTimer = setTimeout(function () { refreshTimer = null; refresh(); }, 1000 - (now - lastRefresh)); }
      return;
    }
    if (pending) { return; }
    pending = true;
    lastRefresh = now;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var current = document.getElementById("live");
        if (!fresh || !current) { return; }
        var checked = {};
        current.querySelectorAll("input.sel:checked").forEach(function (el) { checked[el.value] = true; });
        var all = document.getElementById("select-all");
        var allChecked = all && all.checked;
        current.replaceWith(fresh);
        fresh.querySelectorAll("input.sel").forEach(function (el) { if (checked[el.value]) { el.checked = true; } });
        var all2 = document.getElementById("select-all");
        if (all2) { all2.checked = !!allChecked; }
        bindSelectAll();
        setStatus((source ? "live" : "polling") + " · " + new Date().toLocaleTimeString(), source ? "" : "polling");
      })
      .catch(function () { /* the next change or poll tries again */ })
      .then(function () { pending = false; });
  }

  function onChange(ev) {
    var data = {};
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (live === "*" || data.more || (data.tasks || []).indexOf(live) >= 0) { refresh(); }
  }

  function startPolling() {
    if (pollTimer) { return; }
    setStatus("polling", "polling");
    pollTimer = setInterval(refresh, 5000);
  }

  function connect() {
    if (!live || paused || source) { return; }
    if (!window.EventSource) { startPolling(); return; }
    source = new EventSource(base + "/live");
    source.addEventListener("change", onChange);
    source.onopen = function () {
      failures = 0;
      if (statusEl) { statusEl.dataset.open = "1"; }
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
      setStatus("live", "");
    };
    source.onerror = function () {
      failures++;
      if (statusEl) { statusEl.dataset.open = "0"; }
      if (failures >= 3) {
        // The stream keeps failing (a proxy that buffers, say): poll.
        source.close();
        source = null;
        startPolling();
      }
    };
  }

  function disconnect() {
    if (source) { source.close(); source = null; }
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  }

  if (toggle) {
    var label = function () { toggle.textContent = paused ? "Resume" : "Pause"; };
    label();
    if (paused) { setStatus("paused", "paused"); }
    toggle.addEventListener("click", function () {
      paused = !paused;
      localStorage.setItem("weft.live.paused", paused ? "1" : "0");
      label();
      if (paused) { disconnect(); setStatus("paused", "paused"); } else { connect(); refresh(); }
    });
  }

  function bindSelectAll() {
    var all = document.getElementById("select-all");
    if (!all || all.dataset.bound) { return; }
    all.dataset.bound = "1";
    all.addEventListener("change", function () {
      document.querySelectorAll("input.sel").forEach(function (el) { el.checked = all.checked; });
    });
  }
  bindSelectAll();

  // Forms that say data-confirm ask first (delegated: live refreshes
  // replace forms).
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.dataset && f.dataset.confirm && !window.confirm(f.dataset.confirm)) { e.preventDefault(); }
  });

  connect();
})();
