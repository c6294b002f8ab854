// Kahu's own page behaviour (htmx does the rest): the CSRF header on changes, Alt/Ctrl/Meta/
// Shift-click on a facet value to exclude it, "/" to jump to the query bar.
(function () {
  "use strict";
  // pages that refuse (a bad query, a form with mistakes) say why: show them too
  if (window.htmx) {
    window.htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[2345]..", swap: true },
    ];
  }
  function cookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb !== "get") {
      event.detail.headers["X-CSRF-Token"] = cookie("kahu_csrf");
    }
  });
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a.include[data-exclude]");
    if (!link || !(event.altKey || event.ctrlKey || event.metaKey || event.shiftKey)) {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    const url = link.getAttribute("data-exclude");
    if (window.htmx) {
      window.htmx.ajax("GET", url, { target: "body", swap: "innerHTML" }).then(function () {
        window.history.pushState({}, "", url);
      });
    } else {
      window.location.assign(url);
    }
  }, true);
  document.addEventListener("keydown", function (event) {
    const field = document.getElementById("q");
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (event.key === "/" && field && !typing) {
      event.preventDefault();
      field.focus();
    }
  });
})();
// A form that asks first (deleting), and "select all" in a results table.
document.addEventListener("submit", function (event) {
  const question = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopPropagation();
  }
}, true);
document.addEventListener("change", function (event) {
  if (event.target.matches("[data-select-all]")) {
    const form = event.target.closest("form");
    form.querySelectorAll('input[name="series"]').forEach(function (box) {
      box.checked = event.target.checked;
    });
  }
});
// Filter a table's rows by what they contain (the series page's metadata).
document.addEventListener("input", function (event) {
  const id = event.target.getAttribute && event.target.getAttribute("data-filter-table");
  if (!id) { return; }
  const needle = event.target.value.toLowerCase();
  document.querySelectorAll("#" + id + " tbody tr").forEach(function (row) {
    row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
  });
});
// The query bar suggests fields, and a field's commonest values once it has a colon.
(function () {
  "use strict";
  let timer = null;
  function suggest(field) {
    const text = field.value;
    const start = Math.max(text.lastIndexOf(" "), text.lastIndexOf("(")) + 1;
    const head = text.slice(0, start);
    const token = text.slice(start);
    const list = document.getElementById("q-suggestions");
    const colon = token.indexOf(":");
    function fill(values) {
      list.replaceChildren(...values.slice(0, 12).map(function (v) {
        const option = document.createElement("option");
        option.value = head + v;
        return option;
      }));
    }
    if (colon < 0) {
      const fields = JSON.parse(field.getAttribute("data-fields") || "[]");
      fill(fields.filter((f) => token && f.toLowerCase().startsWith(token.toLowerCase()))
        .map((f) => f + ":"));
      return;
    }
    const name = token.slice(0, colon);
    const prefix = token.slice(colon + 1).replace(/^"/, "");
    fetch("/api/v1/fields/" + encodeURIComponent(name) + "/values?limit=12&prefix=" +
      encodeURIComponent(prefix), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : []))
      .then(function (values) {
        fill(values.map((v) => name + ':"' + String(v.value).replace(/"/g, '\\"') + '"'));
      });
  }
  document.addEventListener("input", function (event) {
    if (event.target.id !== "q" || event.inputType === "insertReplacementText") { return; }
    clearTimeout(timer);
    timer = setTimeout(function () { suggest(event.target); }, 150);
  });
})();

// Keys 1-9 tag the selected series with the n-th tag of the list above the results.
document.addEventListener("keydown", function (event) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName) &&
    document.activeElement.type !== "checkbox";
  if (typing || !/^[1-9]$/.test(event.key) || event.altKey || event.ctrlKey || event.metaKey) {
    return;
  }
  const list = document.querySelector("[data-tag-keys]");
  if (!list) { return; }
  const tag = list.value.split(",").map((t) => t.trim()).filter(Boolean)[Number(event.key) - 1];
  const series = Array.from(document.querySelectorAll('input[name="series"]:checked'))
    .map((box) => box.value);
  if (!tag || series.length === 0) { return; }
  event.preventDefault();
  const csrf = (document.cookie.split("; ").find((c) => c.startsWith("kahu_csrf=")) || "")
    .slice("kahu_csrf=".length);
  fetch("/api/v1/tags", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": decodeURIComponent(csrf) },
    body: JSON.stringify({ series: series, add: [tag] }),
  }).then(function (response) {
    if (response.ok && window.htmx) {
      window.htmx.ajax("GET", window.location.pathname + window.location.search,
        { target: "body", swap: "innerHTML" });
    }
  });
});
