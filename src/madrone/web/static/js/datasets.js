// The datasets page: the local and shared catalogs as tables with search, sort and keyset
// pagination, and per row "show on map", downloads, share and delete. The search lives in
// the page's URL (?q=&index=&owner=&from=&to=&inview=1&sort=&asc=1&tab=shared) so a link
// reproduces it.
"use strict";

(function () {
  const madrone = window.madrone;

  if (document.body.dataset.page !== "datasets") return;

  // -- page state ----------------------------------------------------------------------

  const { api, el, say, user, formatDate } = madrone;
  const PAGE_SIZE = 50; // the API's default page
  const FIELDS = ["q", "index", "owner", "from", "to"];
  const DEFAULT_ASC = { name: true, date: false, created: false };
  const status = document.getElementById("datasets-status");
  const form = document.getElementById("search-form");
  const inView = document.getElementById("search-in-view");
  const prev = document.getElementById("prev-page");
  const next = document.getElementById("next-page");
  const pageNumber = document.getElementById("page-number");
  const tables = {
    local: document.getElementById("local-table"),
    shared: document.getElementById("shared-table"),
  };
  const panels = {
    local: document.getElementById("panel-local"),
    shared: document.getElementById("panel-shared"),
  };
  const tabs = {
    local: document.getElementById("tab-local"),
    shared: document.getElementById("tab-shared"),
  };
  // One header row with the sort buttons; it moves to the table on show.
  const header = tables.local.tHead;

  const state = {
    tab: "local",
    search: {},
    inView: false,
    sort: "created",
    asc: false,
    cursors: [null], // cursors[i] opens page i + 1; the last one is the page shown
  };
  let loading = 0; // the number of the latest request; older answers are dropped

  // -- the map view, as the map page left it ---------------------------------------------

  function storedView() {
    try {
      const view = JSON.parse(localStorage.getItem("madrone.view") || "null");
      const bbox = view && view.bbox;
      if (Array.isArray(bbox) && bbox.length === 4 && bbox.every(Number.isFinite)) return bbox;
    } catch (error) {
      // not JSON: treated as no view
    }
    return null;
  }

  // "W,S,E,N" within [-180, 180]; a map panned across the antimeridian gives west > east.
  function bboxParam(bbox) {
    let [west, south, east, north] = bbox;
    if (east - west >= 360) {
      west = -180;
      east = 180;
    } else {
      const wrap = (lon) => ((((lon + 180) % 360) + 360) % 360) - 180;
      west = wrap(west);
      east = wrap(east);
      if (east === -180 && bbox[2] > bbox[0]) east = 180;
    }
    south = Math.max(-90, south);
    north = Math.min(90, north);
    return [west, south, east, north].map((value) => Number(value.toFixed(6))).join(",");
  }

  function setupInView() {
    const hint = document.getElementById("search-in-view-hint");
    const bbox = storedView();
    inView.disabled = bbox === null;
    if (bbox === null) {
      inView.checked = false;
      hint.textContent = "Open the map first: it remembers its view for this search.";
    } else {
      hint.textContent = `View: ${bbox.map((value) => value.toFixed(2)).join(", ")}`;
    }
  }

  // -- URL <-> state -------------------------------------------------------------------

  function readUrl() {
    const params = new URLSearchParams(window.location.search);
    state.tab = params.get("tab") === "shared" && madrone.hasCentral ? "shared" : "local";
    state.search = {};
    for (const name of FIELDS) {
      const value = (params.get(name) || "").trim();
      if (value) state.search[name] = value;
      form.elements[name].value = value;
    }
    state.inView = params.get("inview") === "1" && storedView() !== null;
    inView.checked = state.inView;
    const sort = params.get("sort");
    state.sort = sort in DEFAULT_ASC ? sort : "created";
    state.asc = params.has("asc") ? params.get("asc") === "1" : DEFAULT_ASC[state.sort];
    state.cursors = [null];
  }

  function writeUrl() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(state.search)) params.set(name, value);
    if (state.inView) params.set("inview", "1");
    if (state.sort !== "created") params.set("sort", state.sort);
    if (state.asc !== DEFAULT_ASC[state.sort]) params.set("asc", state.asc ? "1" : "0");
    if (state.tab === "shared") params.set("tab", "shared");
    const query = params.toString();
    const url = window.location.pathname + (query ? `?${query}` : "");
    if (url !== window.location.pathname + window.location.search) {
      history.pushState(null, "", url);
    }
  }

  function readForm() {
    state.search = {};
    for (const name of FIELDS) {
      const value = form.elements[name].value.trim();
      if (value) state.search[name] = value;
    }
    state.inView = inView.checked && !inView.disabled;
  }

  // -- loading a page ------------------------------------------------------------------

  function apiQuery() {
    const params = new URLSearchParams(state.search);
    params.set("catalog", state.tab);
    params.set("sort", state.sort);
    if (state.asc) params.set("asc", "1");
    params.set("limit", String(PAGE_SIZE));
    if (state.inView) {
      const bbox = storedView();
      if (bbox) params.set("bbox", bboxParam(bbox));
    }
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) params.set("cursor", cursor);
    return params;
  }

  async function load() {
    const ticket = ++loading;
    const table = tables[state.tab];
    showTab();
    table.setAttribute("aria-busy", "true");
    say(status, "Loading…");
    let data;
    try {
      data = await api("GET", `/api/datasets?${apiQuery()}`);
    } catch (error) {
      if (ticket !== loading) return;
      table.removeAttribute("aria-busy");
      fillTable(table, []);
      state.nextCursor = null;
      updatePager();
      say(status, error.message, true);
      return;
    }
    if (ticket !== loading) return;
    table.removeAttribute("aria-busy");
    fillTable(table, data.datasets);
    state.nextCursor = data.next_cursor || null;
    updatePager();
    const count = data.datasets.length;
    const where = state.tab === "shared" ? "in the shared catalog" : "in this site's catalog";
    if (count === 0) {
      const filtered = Object.keys(state.search).length > 0 || state.inView;
      if (state.cursors.length > 1) say(status, "No more datasets.");
      else if (filtered) say(status, `No datasets ${where} match this search.`);
      else say(status, `No datasets ${where} yet.`);
    } else {
      const first = (state.cursors.length - 1) * PAGE_SIZE + 1;
      const range = count === 1 ? `Dataset ${first}` : `Datasets ${first}–${first + count - 1}`;
      say(status, `${range} ${where}.`);
    }
  }

  function updatePager() {
    prev.disabled = state.cursors.length <= 1;
    next.disabled = !state.nextCursor;
    pageNumber.textContent = `Page ${state.cursors.length}`;
  }

  function showTab() {
    for (const name of ["local", "shared"]) {
      const active = name === state.tab;
      panels[name].hidden = !active;
      tabs[name].setAttribute("aria-selected", active ? "true" : "false");
    }
    const table = tables[state.tab];
    if (header.parentNode !== table) table.insertBefore(header, table.tBodies[0]);
    for (const th of header.querySelectorAll("th[data-column]")) {
      const column = th.dataset.column;
      if (column !== state.sort) th.removeAttribute("aria-sort");
      else th.setAttribute("aria-sort", state.asc ? "ascending" : "descending");
    }
  }

  // -- rows ----------------------------------------------------------------------------

  function dateText(dataset) {
    const start = formatDate(dataset.date_start);
    const end = formatDate(dataset.date_end);
    if (!dataset.date_start) return "unknown";
    return dataset.date_end && end !== start ? `${start} – ${end}` : start;
  }

  function fillTable(table, datasets) {
    const body = table.tBodies[0];
    body.replaceChildren(...datasets.map(row));
    if (datasets.length === 0) {
      body.append(el("tr", { class: "empty" }, el("td", { colspan: "7" }, "No datasets.")));
    }
  }

  function row(dataset) {
    const actions = el("td", { class: "actions" });
    actions.append(
      el("a", { class: "show-on-map", href: madrone.links.showOnMap(dataset) }, "Show on map"),
    );
    for (const key of Object.keys(dataset.assets || {})) {
      const href = madrone.links.assetUrl(dataset, key);
      actions.append(" ", el("a", { class: "download", href, download: "" }, key));
    }
    if (state.tab === "local" && madrone.hasCentral && mayChange(dataset)) {
      const onclick = () => share(dataset);
      actions.append(" ", el("button", { type: "button", class: "share", onclick }, "Share"));
    }
    if (mayChange(dataset)) {
      const onclick = () => remove(dataset);
      const button = el("button", { type: "button", class: "delete danger", onclick }, "Delete");
      actions.append(" ", button);
    }
    return el(
      "tr",
      { dataset: { datasetId: dataset.id } },
      el("td", { class: "name", title: dataset.description || null }, dataset.name),
      el("td", { class: "kind" }, dataset.kind),
      el("td", { class: "index" }, dataset.index || "—"),
      el("td", { class: "date" }, dateText(dataset)),
      el("td", { class: "owner" }, dataset.owner),
      el("td", { class: "created" }, formatDate(dataset.created_at)),
      actions,
    );
  }

  // Sharing and deleting are for the dataset's owner or an admin (the server checks too).
  function mayChange(dataset) {
    if (!user.may("editor")) return false;
    return user.role === "admin" || dataset.owner === user.name;
  }

  // -- actions -------------------------------------------------------------------------

  async function share(dataset) {
    say(status, `Sharing ${dataset.name}…`);
    let shared;
    try {
      shared = await api("POST", `/api/datasets/${encodeURIComponent(dataset.id)}/share`);
    } catch (error) {
      say(status, error.message, true);
      return;
    }
    state.tab = "shared";
    state.cursors = [null];
    writeUrl();
    await load();
    const shown = tables.shared.querySelector(`tr[data-dataset-id="${CSS.escape(shared.id)}"]`);
    if (shown) {
      shown.classList.add("highlight");
      shown.scrollIntoView({ block: "nearest" });
    }
    say(status, `Shared ${dataset.name} with the team${shown ? "" : " (not in this search)"}.`);
  }

  async function remove(dataset) {
    const where = state.tab === "shared" ? "the shared catalog" : "this site's catalog";
    const question = `Delete "${dataset.name}" from ${where}? Its files are removed too.`;
    if (!window.confirm(question)) return;
    try {
      await api("DELETE", `/api/datasets/${encodeURIComponent(dataset.id)}`);
    } catch (error) {
      say(status, error.message, true);
      return;
    }
    await load();
    const emptied = tables[state.tab].tBodies[0].querySelector("tr[data-dataset-id]") === null;
    if (emptied && state.cursors.length > 1) {
      state.cursors.pop();
      await load();
    }
    say(status, `Deleted ${dataset.name}.`);
  }

  // -- events --------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    readForm();
    if (state.search.from && state.search.to && state.search.from > state.search.to) {
      say(status, `From (${state.search.from}) is after To (${state.search.to}).`, true);
      form.elements.from.focus();
      return;
    }
    state.cursors = [null];
    writeUrl();
    load();
  });

  form.addEventListener("reset", () => {
    // after the browser has cleared the fields
    setTimeout(() => form.requestSubmit(), 0);
  });

  header.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-sort]");
    if (!button) return;
    const sort = button.dataset.sort;
    state.asc = sort === state.sort ? !state.asc : DEFAULT_ASC[sort];
    state.sort = sort;
    state.cursors = [null];
    writeUrl();
    load();
  });

  for (const [name, tab] of Object.entries(tabs)) {
    tab.addEventListener("click", () => {
      if (tab.disabled || state.tab === name) return;
      state.tab = name;
      state.cursors = [null];
      writeUrl();
      load();
    });
  }

  next.addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    load();
  });

  prev.addEventListener("click", () => {
    if (state.cursors.length <= 1) return;
    state.cursors.pop();
    load();
  });

  window.addEventListener("popstate", () => {
    readUrl();
    load();
  });

  async function loadIndexNames() {
    try {
      const data = await api("GET", "/api/indices");
      const list = document.getElementById("index-options");
      const option = (index) => el("option", { value: index.name }, index.long_name || "");
      list.replaceChildren(...data.indices.map(option));
    } catch (error) {
      // the suggestions are a convenience; the field takes any name
    }
  }

  setupInView();
  readUrl();
  load();
  loadIndexNames();
})();
