// The operator console's only script. Every action goes through ioc's JSON API (the same
// endpoints any client uses), authenticated by the session cookie and the page's CSRF token.
// The alerts, silences, pending targets, announcement, maintenance, history and who is on
// duty are live: the console's stream (/console/stream) sends each as a server-rendered,
// escaped fragment when it changes, and this script swaps it in, then applies the filters
// and the selection again.
// Actions whose result the stream shows (data-live forms, bulk) do not reload the page (a
// data-reset form is emptied after success); the others reload it after success.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return; // the sign-in page: a plain form
  const csrf = meta.content;
  const status = document.getElementById("status");
  const root = document.querySelector("main[data-lang]");
  const lang = root ? root.dataset.lang : "vi";
  const DONE = "ioc-console-done";
  const $ = (id) => document.getElementById(id);

  function show(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
    status.hidden = false;
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  }

  function describe(error, fallback, status) {
    if (!error || !error.error) return fallback;
    const detail = error.detail;
    if (!detail) return error.error;
    // a 400's detail says what is wrong with the input, a typed time's in the page's language
    if (status === 400 && typeof detail === "string") return detail;
    return error.error + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail));
  }

  async function call(url, method, data) {
    // ?lang= makes the API say what is wrong with a typed time in the page's language
    const sep = url.includes("?") ? "&" : "?";
    const response = await fetch(url + sep + "lang=" + lang, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: method === "DELETE" ? undefined : JSON.stringify(data || {}),
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(describe(body, response.status + " " + response.statusText,
                               response.status));
    }
    return body;
  }

  // ---- the silence builder: matchers from its lists, or the raw field -------------------
  const builder = $("new-silence");

  function quote(value) {
    return '"' + value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") + '"';
  }

  function builderMatchers() {
    const raw = $("silence-matchers").value.split("\n").map((s) => s.trim()).filter(Boolean);
    if ($("raw-matchers").open && raw.length) return raw;
    const out = [];
    for (const name of ["alertname", "department", "target"]) {
      const value = builder.elements["b_" + name].value;
      if (value) out.push(name + "=" + quote(value));
    }
    return out.concat(raw);
  }

  function body(form) {
    if (form === builder) {
      const data = { matchers: builderMatchers(), comment: form.elements.comment.value };
      if (form.elements.duration.value) data.duration = form.elements.duration.value;
      else data.end = form.elements.end.value;
      return data;
    }
    const data = {};
    for (const el of form.elements) {
      if (!el.name || el.type === "submit" || el.type === "button") continue;
      if (el.dataset.json !== undefined) {
        data[el.name] = JSON.parse(el.value); // a SyntaxError is shown like an API error
      } else if (el.name === "matchers") {
        const items = el.value.split("\n").map((s) => s.trim()).filter(Boolean);
        data.matchers = (data.matchers || []).concat(items);
      } else if (el.value !== "" || el.dataset.keepEmpty !== undefined) {
        data[el.name] = el.value; // keep-empty: an empty value means something (withdraw)
      }
    }
    return data;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await call(form.dataset.api, form.dataset.method, body(form));
      if (form.dataset.live !== undefined) {
        show(form.dataset.done || "", false);
        if (form === builder) { form.reset(); syncEnd(); hidePreview(); }
        else if (form.dataset.reset !== undefined) form.reset();
        return;
      }
      sessionStorage.setItem(DONE, form.dataset.done || "");
      location.reload();
    } catch (err) {
      show(err.message || String(err), true);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });

  const done = sessionStorage.getItem(DONE);
  if (done) {
    sessionStorage.removeItem(DONE);
    show(done, false);
  }

  const alertsBody = $("alerts-body");
  if (!alertsBody) return; // the incidents page: forms only

  // ---- filters, reflected in the address -------------------------------------------------
  const FILTERS = ["severity", "department", "rule"];
  const selects = Object.fromEntries(FILTERS.map((f) => [f, $("f-" + f)]));

  function ensureOption(select, value) {
    // a value the page did not list (a new department's alert): add it, as text
    if (!value || [...select.options].some((o) => o.value === value)) return;
    select.add(new Option(value, value));
  }

  function applyFilters() {
    const rows = [...alertsBody.querySelectorAll("tr.alert")];
    let shown = 0;
    for (const row of rows) {
      for (const f of FILTERS) ensureOption(selects[f], row.dataset[f]);
      const match = FILTERS.every((f) => !selects[f].value || row.dataset[f] === selects[f].value);
      row.hidden = !match;
      if (match) shown += 1;
      else row.querySelector("input.pick").checked = false; // never act on what is hidden
    }
    $("alerts-empty").hidden = rows.length > 0;
    $("alerts-table").hidden = rows.length === 0;
    $("alerts-shown").textContent = rows.length && shown !== rows.length
      ? fill($("alerts-shown").dataset.text || "", { shown, total: rows.length }) : "";
    updateSelection();
  }

  function filtersToUrl() {
    const url = new URL(location.href);
    for (const f of FILTERS) {
      if (selects[f].value) url.searchParams.set(f, selects[f].value);
      else url.searchParams.delete(f);
    }
    history.replaceState(null, "", url);
  }

  for (const f of FILTERS) {
    selects[f].addEventListener("change", () => { filtersToUrl(); applyFilters(); });
  }

  // ---- selection and bulk actions ---------------------------------------------------------
  const pickAll = $("pick-all");
  const bulk = $("bulk");
  const countText = $("bulk-count").textContent;
  const countTemplate = countText.replace(/\d+/, "{count}");

  function picked() {
    return [...alertsBody.querySelectorAll("tr.alert:not([hidden]) input.pick:checked")]
      .map((box) => box.value);
  }

  function updateSelection() {
    const visible = [...alertsBody.querySelectorAll("tr.alert:not([hidden]) input.pick")];
    const chosen = visible.filter((b) => b.checked).length;
    pickAll.checked = visible.length > 0 && chosen === visible.length;
    pickAll.indeterminate = chosen > 0 && chosen < visible.length;
    $("bulk-count").textContent = fill(countTemplate, { count: chosen });
    bulk.querySelectorAll("button").forEach((b) => { b.disabled = chosen === 0; });
  }

  // the end field shows when "until a time" is chosen instead of a preset duration
  function syncBulkEnd() {
    const until = bulk.elements.duration.value === "";
    bulk.elements.end.hidden = !until;
    bulk.elements.end.disabled = !until;
  }
  bulk.elements.duration.addEventListener("change", syncBulkEnd);

  pickAll.addEventListener("change", () => {
    alertsBody.querySelectorAll("tr.alert:not([hidden]) input.pick")
      .forEach((box) => { box.checked = pickAll.checked; });
    updateSelection();
  });
  alertsBody.addEventListener("change", (event) => {
    if (event.target.matches("input.pick")) updateSelection();
  });

  bulk.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : "ack";
    const fingerprints = picked();
    if (!fingerprints.length) { show(bulk.dataset.none, true); return; }
    const data = { action, fingerprints, comment: bulk.elements.comment.value };
    if (action === "silence") {
      // a preset duration, or "until" a typed dd/mm/yyyy HH:MM in the province's time
      if (bulk.elements.duration.value) data.duration = bulk.elements.duration.value;
      else data.end = bulk.elements.end.value;
    }
    const buttons = bulk.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const result = await call("/api/v1/alerts/bulk", "POST", data);
      const failures = result.results.filter((r) => !r.ok)
        .map((r) => r.fingerprint + ": " + (r.detail || r.error));
      show([fill(bulk.dataset.result, { ok: result.ok, total: result.results.length })]
        .concat(failures).join(" "), result.failed > 0);
      if (!result.failed) {
        // done: the bar and the selection start afresh, so the next action is chosen anew
        bulk.reset();
        syncBulkEnd();
        alertsBody.querySelectorAll("input.pick:checked").forEach((box) => { box.checked = false; });
      }
    } catch (err) {
      show(err.message || String(err), true);
    } finally {
      updateSelection();
    }
  });

  // ---- live parts from the console's stream -----------------------------------------------
  // A row's comment being typed, or its chosen duration, survives a swap of the rows (the
  // operator may be half-way through a sentence when another desk acks something).
  function field(el) {
    const row = el.closest("tr[data-fingerprint]");
    const form = el.closest("form");
    return row && form && el.name
      ? row.dataset.fingerprint + "|" + form.className + "|" + el.name : null;
  }

  function typing() {
    const values = new Map();
    alertsBody.querySelectorAll("form input:not([type=hidden]), form select").forEach((el) => {
      const key = field(el);
      if (key && el.value !== el.defaultValue && !(el.tagName === "SELECT" &&
          el.selectedOptions[0] && el.selectedOptions[0].defaultSelected)) {
        values.set(key, el.value);
      }
    });
    const active = document.activeElement;
    const focus = active && alertsBody.contains(active) ? field(active) : null;
    const caret = focus && typeof active.selectionStart === "number" ? active.selectionStart : null;
    return { values, focus, caret };
  }

  function retype(typed) {
    alertsBody.querySelectorAll("form input:not([type=hidden]), form select").forEach((el) => {
      const key = field(el);
      if (!key) return;
      if (typed.values.has(key)) el.value = typed.values.get(key);
      if (key === typed.focus) {
        el.focus();
        if (typed.caret !== null && el.setSelectionRange) el.setSelectionRange(typed.caret, typed.caret);
      }
    });
  }

  // Rows arrive as deltas (web/console_rows.py): the order of every row's key and the HTML of
  // the rows that changed. Rows that did not change keep their element (and what is typed
  // in it); a key with neither a row here nor new HTML means a missed step: reload.
  const parser = document.createElement("tbody");

  function applyRows(body, data, attr) {
    const html = data.html[lang] || data.html.vi || {};
    const existing = new Map([...body.children].map((el) => [el.dataset[attr], el]));
    const rows = [];
    for (const key of data.order) {
      let row = existing.get(key);
      if (key in html) {
        parser.innerHTML = html[key];
        row = parser.firstElementChild;
      }
      if (!row) { location.reload(); return; }
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  function swap(kind, data) {
    if (kind === "alerts") {
      const keep = new Set(picked());
      const typed = typing();
      applyRows(alertsBody, data, "fingerprint");
      alertsBody.querySelectorAll("input.pick").forEach((box) => {
        box.checked = keep.has(box.value);
      });
      retype(typed);
      $("alerts-count").textContent = data.count;
      applyFilters();
    } else if (kind === "silences") {
      $("silence-list").innerHTML = data.html[lang] || data.html.vi;
      $("silences-empty").hidden = data.count > 0;
    } else if (kind === "pending") {
      applyRows($("pending-body"), data, "target");
      $("pending-count").textContent = data.count;
      $("pending-empty").hidden = data.count > 0;
      $("pending-table").hidden = data.count === 0;
    } else if (WHOLE.includes(kind)) {
      $(kind + "-state").innerHTML = data.html[lang] || data.html.vi;
    }
  }

  const WHOLE = ["announcement", "maintenance", "history", "oncall"];

  function connect() {
    const since = root.dataset.since;
    const source = new EventSource("/console/stream?since=" + encodeURIComponent(since));
    const live = $("live-state");
    for (const kind of ["alerts", "silences", "pending", ...WHOLE]) {
      source.addEventListener(kind, (event) => {
        root.dataset.since = event.lastEventId || root.dataset.since;
        swap(kind, JSON.parse(event.data));
      });
    }
    source.addEventListener("heartbeat", () => { live.hidden = false; });
    source.addEventListener("reset", () => { source.close(); location.reload(); });
    source.onerror = () => {
      live.hidden = true; // EventSource reconnects by itself, unless it was refused (401)
      if (source.readyState === EventSource.CLOSED) show(live.dataset.closed, true);
    };
  }

  // ---- silence builder: end time, target list, preview --------------------------------------
  const endField = $("b-end");
  function syncEnd() {
    const until = builder.elements.duration.value === "";
    endField.disabled = !until;
    endField.required = until;
  }
  builder.elements.duration.addEventListener("change", syncEnd);

  // the target list follows the chosen department
  builder.elements.b_department.addEventListener("change", () => {
    const dept = builder.elements.b_department.value;
    for (const option of builder.elements.b_target.options) {
      if (!option.value) continue;
      option.hidden = Boolean(dept) && option.dataset.department !== dept;
    }
    const chosen = builder.elements.b_target.selectedOptions[0];
    if (chosen && chosen.hidden) builder.elements.b_target.value = "";
  });

  const preview = $("preview");
  function hidePreview() { preview.hidden = true; }

  async function showPreview() {
    const matchers = builderMatchers();
    const list = $("preview-list");
    list.replaceChildren();
    preview.hidden = false;
    if (!matchers.length) {
      $("preview-head").textContent = preview.dataset.pick;
      return;
    }
    try {
      const result = await call("/api/v1/silences/preview", "POST", { matchers });
      $("preview-head").textContent = result.count
        ? fill(preview.dataset.some, { count: result.count }) : preview.dataset.none;
      for (const a of result.alerts) {
        const item = document.createElement("li");
        item.className = "preview-row";
        item.dataset.fingerprint = a.fingerprint;
        const what = document.createElement("b");
        what.textContent = a.summary;
        what.translate = false;
        const where = document.createElement("span");
        where.textContent = [a.department_name, a.labels.target || ""].filter(Boolean).join(" · ");
        where.translate = false;
        item.append(what, where);
        list.append(item);
      }
    } catch (err) {
      $("preview-head").textContent = err.message || String(err);
    }
  }

  $("b-preview").addEventListener("click", showPreview);
  for (const name of ["b_alertname", "b_department", "b_target"]) {
    builder.elements[name].addEventListener("change", showPreview);
  }

  $("alerts-shown").dataset.text = $("alerts-shown").dataset.text || "";
  syncEnd();
  applyFilters();
  connect();
})();
