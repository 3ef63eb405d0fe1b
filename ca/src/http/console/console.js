// agentca console: small enhancements; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Type in the search box to narrow the agents table at once.
  for (const table of document.querySelectorAll("table[data-filter]")) {
    const input = document.getElementById(table.dataset.filter);
    if (!input) continue;
    const rows = Array.from(table.tBodies[0].rows);
    input.addEventListener("input", () => {
      const q = input.value.trim().toLowerCase();
      for (const row of rows) row.hidden = q !== "" && !row.textContent.toLowerCase().includes(q);
    });
  }
  // Ask once more before a destructive action.
  for (const form of document.querySelectorAll("form")) {
    const danger = form.querySelector("button.danger");
    if (!danger) continue;
    form.addEventListener("submit", (event) => {
      if (!window.confirm(danger.textContent.trim() + "?")) event.preventDefault();
    });
  }
});
