// The operator console's only script. Every action goes through ioc's JSON API (the same
// endpoints any client uses), authenticated by the session cookie and the page's CSRF token;
// after a success the page reloads so it shows what the server now holds.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return; // the sign-in page: a plain form
  const csrf = meta.content;
  const status = document.getElementById("status");
  const DONE = "ioc-console-done";

  function show(text, bad) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(bad));
    status.hidden = false;
  }

  function body(form) {
    const data = {};
    for (const el of form.elements) {
      if (!el.name || el.type === "submit") continue;
      if (el.dataset.json !== undefined) {
        data[el.name] = JSON.parse(el.value); // a SyntaxError is shown like an API error
      } else if (el.name === "matchers") {
        const items = el.value.split("\n").map((s) => s.trim()).filter(Boolean);
        data.matchers = (data.matchers || []).concat(items);
      } else if (el.value !== "") {
        data[el.name] = el.value;
      }
    }
    return data;
  }

  function describe(error, fallback) {
    if (!error || !error.error) return fallback;
    const detail = error.detail;
    if (!detail) return error.error;
    return error.error + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail));
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    const method = form.dataset.method;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(form.dataset.api, {
        method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: method === "DELETE" ? undefined : JSON.stringify(body(form)),
      });
      if (response.ok) {
        sessionStorage.setItem(DONE, form.dataset.done || "");
        location.reload();
        return;
      }
      const error = await response.json().catch(() => null);
      show(describe(error, response.status + " " + response.statusText), true);
    } catch (err) {
      show(String(err), true);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });

  const done = sessionStorage.getItem(DONE);
  if (done) {
    sessionStorage.removeItem(DONE);
    show(done, false);
  }
})();
