// benchsuite report: sortable leaderboard tables, filters by noise rate and method.
// No dependencies, no network; the page works from file://.
"use strict";

function cellValue(row, column) {
  const cell = row.cells[column];
  const raw = cell ? cell.dataset.value : undefined;
  if (raw === undefined) return { text: cell ? cell.textContent.trim().toLowerCase() : "" };
  const number = parseFloat(raw);
  return { number: Number.isNaN(number) ? null : number };
}

function compare(a, b) {
  if ("text" in a) return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  if (a.number === null) return b.number === null ? 0 : 1;  // rows without a value go last
  if (b.number === null) return -1;
  return a.number - b.number;
}

function sortTable(table, column) {
  const header = table.tHead.rows[0].cells[column];
  const descending = header.getAttribute("aria-sort") === "ascending";
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((r1, r2) => {
    const a = cellValue(r1, column), b = cellValue(r2, column);
    if (a.number === null || b.number === null) return compare(a, b);  // missing values last either way
    return descending ? -compare(a, b) : compare(a, b);
  });
  for (const row of rows) body.appendChild(row);
}

function applyFilters(section) {
  const text = section.querySelector("input.method-filter").value.trim().toLowerCase();
  const hiddenRates = new Set(
    Array.from(section.querySelectorAll("input.rate-filter")).filter((box) => !box.checked).map((box) => box.value)
  );
  for (const row of section.querySelectorAll("table.board tbody tr")) {
    row.hidden = text !== "" && !row.dataset.label.toLowerCase().includes(text);
  }
  for (const cell of section.querySelectorAll("[data-rate]")) {
    cell.hidden = hiddenRates.has(cell.dataset.rate);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.board")) {
    Array.from(table.tHead.rows[0].cells).forEach((th, column) => {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", () => sortTable(table, column));
      th.addEventListener("keydown", (event) => { if (event.key === "Enter") sortTable(table, column); });
    });
  }
  for (const section of document.querySelectorAll("section.board-section")) {
    for (const input of section.querySelectorAll("input.method-filter, input.rate-filter")) {
      input.addEventListener("input", () => applyFilters(section));
    }
  }
});
