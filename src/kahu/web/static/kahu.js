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
