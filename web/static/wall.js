// The wall's only script. The page arrives rendered by the server; this keeps it live:
// it applies the stream's deltas (HTML fragments rendered and escaped by the server),
// reconnects with backoff and resumes from the last event id, keeps the clock and the data
// ages ticking, and says in words when the screen is cut off instead of pretending.
"use strict";
(function () {
  const body = document.body;
  const cfg = JSON.parse(body.dataset.config);
  const words = cfg.words;
  const ORDER = { down: 0, degraded: 1, unknown: 2, up: 3 };
  const numberFmt = new Intl.NumberFormat(cfg.lang === "vi" ? "vi-VN" : "en-GB");
  const timeFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: cfg.tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  const dateFmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: cfg.tz, day: "2-digit", month: "2-digit", year: "numeric",
  });

  let offset = cfg.rendered_at * 1000 - Date.now(); // server clock minus ours
  let lastId = cfg.since;
  let lastServerTime = cfg.rendered_at;
  let lastMessageAt = Date.now();
  let source = null;
  let backoff = 1000;
  let connected = false;

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));
  }
  function serverNow() { return (Date.now() + offset) / 1000; }
  function clockText(ts) { return timeFmt.format(new Date(ts * 1000)); }

  function ageText(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return fill(words.age_seconds, { n: s });
    if (s < 3600) return fill(words.age_minutes, { n: Math.floor(s / 60) });
    if (s < 86400) return fill(words.age_hours, { n: Math.floor(s / 3600) });
    return fill(words.age_days, { n: Math.floor(s / 86400) });
  }

  function tick() {
    const now = serverNow();
    const clock = document.getElementById("clock");
    if (clock) {
      clock.textContent = clockText(now);
      document.getElementById("date").textContent = dateFmt.format(new Date(now * 1000));
    }
    for (const el of document.querySelectorAll(".age[data-updated]")) {
      const updated = Number(el.dataset.updated);
      el.textContent = fill(words.updated, { age: ageText(now - updated) });
      const panel = el.closest(".panel");
      if (panel && panel.classList.contains("side")) {
        panel.classList.toggle("stale", now - updated > cfg.stale_after);
      }
    }
    flashTiles(now);
    if (connected && Date.now() - lastMessageAt > cfg.offline_after * 1000) {
      setOffline(true); // quiet for too long: say so, even if the socket looks open
    }
  }

  function setOffline(offline) {
    body.classList.toggle("offline", offline);
    const banner = document.getElementById("offline");
    banner.hidden = !offline;
    if (offline) {
      document.getElementById("offline-text").textContent =
        fill(words.offline_banner, { time: clockText(lastServerTime) });
    }
    const live = document.getElementById("live");
    if (live) live.textContent = offline ? words.offline : words.live;
  }

  function fragment(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    return tpl.content.firstElementChild;
  }

  function sortAndCount() {
    const tiles = document.getElementById("tiles");
    if (!tiles) return;
    const items = Array.from(tiles.children);
    items.sort((a, b) => (ORDER[a.dataset.state] - ORDER[b.dataset.state]) ||
      a.dataset.name.localeCompare(b.dataset.name, cfg.lang));
    items.forEach((el, i) => { if (tiles.children[i] !== el) tiles.insertBefore(el, tiles.children[i]); });
    const counts = { up: 0, degraded: 0, down: 0, unknown: 0 };
    for (const el of items) counts[el.dataset.state] += 1;
    for (const state of Object.keys(counts)) {
      const b = document.querySelector(`[data-count="${state}"] b`);
      if (b) b.textContent = numberFmt.format(counts[state]);
    }
  }

  // ---- the alerts panel: the plan that fits, the flash of a new critical, its tone ----------

  // The server sends plans from the most lines to the fewest (web.wall.alert_plans); the
  // first whose lines fit the panel's height is shown. Only the measuring is done here.
  function applyPlan(fit, plan) {
    for (const list of fit.querySelectorAll(".alert-list")) {
      const on = list.dataset.mode === plan.mode;
      list.hidden = !on;
      for (const li of list.children) li.hidden = !on || Number(li.dataset.line) >= plan.n;
    }
    for (const more of fit.querySelectorAll(".more[data-more]")) {
      more.hidden = Number(more.dataset.more) !== plan.more;
    }
  }

  function fitAlerts() {
    const fit = document.querySelector("#panel-alerts:not([hidden]) .alert-fit");
    if (!fit) return;
    const plans = JSON.parse(fit.dataset.plans);
    for (let i = 0; i < plans.length; i++) {
      applyPlan(fit, plans[i]);
      fit.dataset.plan = String(i);
      if (fit.scrollHeight <= fit.clientHeight + 1) return;
    }
  }

  const flashing = new Map(); // department code -> server time its flash ends
  const toned = new Set(); // fingerprints whose tone was played (or tried)
  let audio = null;

  function audioContext() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!audio && Context) audio = new Context();
    return audio;
  }

  function soundHint(show) {
    const hint = document.getElementById("sound-hint");
    if (!hint) return;
    hint.textContent = words.sound_blocked;
    hint.hidden = !show;
  }

  function tone() {
    if (!cfg.sound) return;
    const ctx = audioContext();
    if (!ctx) return;
    if (ctx.state !== "running") { // the browser waits for a click on the page
      body.dataset.tonesBlocked = String(Number(body.dataset.tonesBlocked || 0) + 1);
      soundHint(true);
      return;
    }
    const start = ctx.currentTime;
    for (const [at, freq] of [[0, 880], [0.22, 1175]]) { // two short beeps, made here
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start + at);
      gain.gain.exponentialRampToValueAtTime(0.4, start + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.18);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + at);
      osc.stop(start + at + 0.2);
    }
    body.dataset.tones = String(Number(body.dataset.tones || 0) + 1);
  }

  function flashTiles(now) {
    for (const [code, until] of flashing) {
      const tile = document.getElementById("dept-" + code);
      if (tile) tile.classList.toggle("flash", until > now);
      if (until <= now) flashing.delete(code);
    }
    for (const li of document.querySelectorAll("#panel-alerts [data-fresh-until]")) {
      li.classList.toggle("flash", Number(li.dataset.freshUntil) > now);
    }
  }

  function newAlerts() {
    const fit = document.querySelector("#panel-alerts .alert-fit");
    const now = serverNow();
    if (fit) {
      for (const [fingerprint, code, until] of JSON.parse(fit.dataset.fresh)) {
        if (until <= now) continue;
        if (code) flashing.set(code, Math.max(until, flashing.get(code) || 0));
        if (!toned.has(fingerprint)) { toned.add(fingerprint); tone(); }
      }
    }
    flashTiles(now);
  }

  function enableSound() {
    if (!cfg.sound) return;
    const ctx = audioContext();
    if (!ctx) return;
    if (ctx.state !== "running") soundHint(true);
    document.addEventListener("click", () => {
      ctx.resume().then(() => soundHint(false));
    });
  }

  const handlers = {
    tile(data) {
      const old = document.getElementById("dept-" + data.code);
      if (!old) return; // not in this view
      old.replaceWith(fragment(data.html[cfg.lang]));
      flashTiles(serverNow()); // a flashing tile keeps flashing when it is redrawn
      const age = document.querySelector("#panel-departments .age");
      if (age && data.updated) age.dataset.updated = String(data.updated);
      sortAndCount();
    },
    panel(data) {
      const old = document.getElementById("panel-" + data.panel);
      if (old) old.replaceWith(fragment(data.html[cfg.lang]));
      if (data.panel === "alerts") newAlerts();
      fitAlerts(); // another panel's height changes the room the alerts have
    },
    announcement(data) {
      const box = document.getElementById("announcement");
      if (!box) return;
      document.getElementById("announcement-text").textContent = data.text;
      box.hidden = !data.text;
      fitAlerts();
    },
    duty(data) {
      const box = document.getElementById("duty");
      if (!box) return;
      document.getElementById("duty-text").textContent = data.text;
      box.hidden = !data.text;
    },
    heartbeat(data) {
      offset = data.now * 1000 - Date.now();
    },
    reset() {
      location.reload(); // the events in between are gone: start again from a fresh page
    },
  };

  function connect() {
    source = new EventSource("/api/v1/stream?since=" + encodeURIComponent(lastId));
    source.onopen = () => { backoff = 1000; };
    for (const kind of Object.keys(handlers)) {
      source.addEventListener(kind, (event) => {
        if (event.lastEventId) lastId = event.lastEventId;
        lastMessageAt = Date.now();
        const data = JSON.parse(event.data);
        if (kind === "heartbeat") lastServerTime = data.now;
        else lastServerTime = serverNow();
        connected = true;
        setOffline(false);
        handlers[kind](data);
      });
    }
    source.onerror = () => {
      source.close();
      connected = false;
      setOffline(true);
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  function scheduleRotation() {
    if (!cfg.rotate || cfg.views.length < 2) return;
    setTimeout(function next() {
      if (body.classList.contains("offline")) { setTimeout(next, 5000); return; }
      const here = cfg.views.indexOf(cfg.current);
      location.href = cfg.views[(here + 1) % cfg.views.length];
    }, cfg.rotate * 1000);
  }

  sortAndCount();
  enableSound();
  newAlerts();
  fitAlerts();
  document.fonts.ready.then(fitAlerts); // the font changes how the summaries wrap
  window.addEventListener("resize", fitAlerts);
  tick();
  setInterval(tick, 1000);
  connect();
  scheduleRotation();
})();
