// Request a mosaic: an area drawn on the map (rectangle or polygon, with Leaflet-Geoman) or
// typed as two corners, the index or an expression and the engine's options; the engine's
// preflight answers beside the form before anything is queued. Jobs then show their live
// progress in #jobs, and a job that succeeds puts its datasets on the map.
"use strict";

(function () {
  const { api, el, say, user } = window.madrone;
  const app = window.madroneMap;
  const map = app.map;
  const form = document.getElementById("request-form");
  const fields = {
    index: document.getElementById("request-index"),
    expression: document.getElementById("request-expression"),
    resolution: document.getElementById("request-resolution"),
    from: document.getElementById("request-from"),
    to: document.getElementById("request-to"),
    cloud: document.getElementById("request-cloud"),
    method: document.getElementById("request-method"),
    source: document.getElementById("request-source"),
    name: document.getElementById("request-name"),
  };
  const corners = ["corner-ul-lat", "corner-ul-lon", "corner-lr-lat", "corner-lr-lon"]
    .map((id) => document.getElementById(id));
  const AREA_STYLE = { color: "#f08c00", weight: 2, dashArray: "6 4", fillOpacity: 0.08 };
  const POLL_MS = 1000;
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);

  let area = null; // the drawn or typed area on the map
  let polygon = null; // a drawn polygon's GeoJSON geometry (corners are used otherwise)

  // ---- the area ----------------------------------------------------------------------------

  function round(value) {
    return Number(value.toFixed(6));
  }

  function showArea(layer) {
    if (area) map.removeLayer(area);
    area = layer;
    if (area) {
      area.setStyle(AREA_STYLE);
      area.options.pmIgnore = true;
      area.addTo(map);
    }
  }

  function setCorners(bounds) {
    const values = [bounds.getNorth(), bounds.getWest(), bounds.getSouth(), bounds.getEast()];
    corners.forEach((input, index) => { input.value = String(round(values[index])); });
  }

  function describeArea() {
    const text = polygon
      ? `Polygon of ${polygon.coordinates[0].length - 1} vertices (its bounding corners shown).`
      : "Draw an area, or type its corners (degrees).";
    say("request-area", text);
  }

  function typedBounds() {
    const values = corners.map((input) => input.value.trim());
    if (values.some((value) => value === "")) return null;
    const [ulLat, ulLon, lrLat, lrLon] = values.map(Number);
    if (![ulLat, ulLon, lrLat, lrLon].every(Number.isFinite)) return null;
    return L.latLngBounds([lrLat, ulLon], [ulLat, lrLon]);
  }

  map.on("pm:create", (event) => {
    const layer = event.layer;
    map.removeLayer(layer);
    const drawn = layer.toGeoJSON().geometry;
    if (event.shape === "Polygon") {
      polygon = drawn;
      showArea(L.polygon(layer.getLatLngs()));
    } else {
      polygon = null;
      showArea(L.rectangle(layer.getBounds()));
    }
    setCorners(layer.getBounds());
    describeArea();
    say("request-errors", "");
  });

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || !map.pm.globalDrawModeEnabled()) return;
    map.pm.disableDraw();
    say("request-errors", "");
  });

  function draw(shape) {
    if (map.pm.globalDrawModeEnabled()) map.pm.disableDraw();
    map.pm.enableDraw(shape, { snappable: false, templineStyle: AREA_STYLE, hintlineStyle: AREA_STYLE,
      pathOptions: AREA_STYLE });
    say("request-errors", shape === "Rectangle"
      ? "Click two opposite corners on the map." : "Click the vertices; click the first to close.");
  }

  document.getElementById("draw-rectangle").addEventListener("click", () => draw("Rectangle"));
  document.getElementById("draw-polygon").addEventListener("click", () => draw("Polygon"));
  document.getElementById("draw-clear").addEventListener("click", () => {
    if (map.pm.globalDrawModeEnabled()) map.pm.disableDraw();
    polygon = null;
    showArea(null);
    corners.forEach((input) => { input.value = ""; });
    describeArea();
    say("request-errors", "");
  });
  for (const input of corners) {
    input.addEventListener("change", () => {
      polygon = null; // typed corners replace a drawn polygon
      const bounds = typedBounds();
      showArea(bounds && bounds.isValid() ? L.rectangle(bounds) : null);
      describeArea();
    });
  }

  // ---- the request body --------------------------------------------------------------------

  // The JSON body of POST /api/jobs for the form, or throw an Error naming the field.
  function requestBody() {
    const body = {};
    if (polygon) {
      body.geometry = polygon;
    } else {
      const values = corners.map((input) => input.value.trim());
      if (values.every((value) => value === "")) {
        throw new Error("Draw an area on the map or type its four corners.");
      }
      const labels = ["upper-left latitude", "upper-left longitude", "lower-right latitude",
        "lower-right longitude"];
      body.corners = values.map((value, index) => {
        const number = Number(value);
        if (value === "" || !Number.isFinite(number)) throw new Error(`The ${labels[index]} is not a number.`);
        return number;
      });
    }
    const expression = fields.expression.value.trim();
    if (expression) {
      const match = expression.match(/^\s*([A-Za-z0-9][A-Za-z0-9_-]*)\s*=(?!=)\s*(.+)$/);
      body.indices = [];
      body.expressions = match ? { [match[1]]: match[2] } : { custom: expression };
    } else {
      body.indices = [fields.index.value || "ndvi"];
    }
    body.resolution = Number(fields.resolution.value);
    const from = fields.from.value;
    const to = fields.to.value;
    if (from || to) {
      if (from && to && from > to) throw new Error("The start date is after the end date.");
      body.datetime = `${from || ".."}/${to || ".."}`;
    }
    const cloud = fields.cloud.value.trim();
    if (cloud !== "") {
      const number = Number(cloud);
      if (!Number.isFinite(number) || number < 0 || number > 100) {
        throw new Error("The cloud limit must be a percentage from 0 to 100.");
      }
      body.max_cloud = number;
    }
    body.method = fields.method.value;
    if (fields.source.value) body.source = fields.source.value;
    const name = fields.name.value.trim();
    if (name) body.name = name;
    return body;
  }

  async function preflight(body) {
    try {
      return await api("POST", "/api/jobs/preflight", body);
    } catch (error) {
      if (error.status === 404 || error.status === 405) return null; // no preflight endpoint
      throw error;
    }
  }

  const submit = document.getElementById("request-submit");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("request-errors", "");
    let body;
    try {
      body = requestBody();
    } catch (error) {
      say("request-errors", error.message, true);
      return;
    }
    submit.disabled = true;
    try {
      say("request-errors", "Checking the request…");
      await preflight(body);
      const job = await api("POST", "/api/jobs", body);
      say("request-errors", `Queued job ${job.name || job.id}.`);
      track(job);
    } catch (error) {
      say("request-errors", error.message, true);
    } finally {
      submit.disabled = false;
    }
  });

  // ---- jobs --------------------------------------------------------------------------------

  const jobs = new Map(); // id -> {job, item}
  let timer = null;

  function eta(job) {
    const { done, total } = job.progress || {};
    if (job.status !== "running" || !job.started_at || !total || !done) return "";
    const elapsed = (Date.now() - Date.parse(job.started_at)) / 1000;
    if (!(elapsed > 0)) return "";
    const left = Math.max(0, (elapsed / done) * (total - done));
    if (left < 1) return "almost done";
    if (left < 90) return `about ${Math.round(left)} s left`;
    if (left < 5400) return `about ${Math.round(left / 60)} min left`;
    return `about ${(left / 3600).toFixed(1)} h left`;
  }

  function jobItem(job) {
    const item = el("li", { class: "job", dataset: { jobId: job.id } },
      el("div", { class: "job-head" },
        el("span", { class: "job-name" }, job.name || job.id),
        el("span", { class: "job-state" })),
      el("progress", { class: "job-progress", max: "1", value: "0" }),
      el("div", { class: "job-foot" },
        el("span", { class: "job-count" }),
        el("span", { class: "job-eta" }),
        mayCancel(job) ? el("button", { type: "button", class: "link job-cancel",
          onclick: (event) => cancel(job.id, event.target) }, "Cancel") : null),
      el("div", { class: "job-error error", role: "alert" }));
    return item;
  }

  function mayCancel(job) {
    return user.may("editor") && (user.role === "admin" || job.requester === user.name);
  }

  async function cancel(id, control) {
    control.disabled = true;
    try {
      track(await api("POST", `/api/jobs/${encodeURIComponent(id)}/cancel`));
    } catch (error) {
      jobs.get(id).item.querySelector(".job-error").textContent = error.message;
      control.disabled = false;
    }
  }

  function renderJob(entry) {
    const { job, item } = entry;
    const { done, total } = job.progress || { done: 0, total: 0 };
    item.dataset.status = job.status;
    item.querySelector(".job-state").textContent = job.status;
    const bar = item.querySelector(".job-progress");
    bar.max = total || 1;
    bar.value = job.status === "succeeded" ? (total || 1) : (done || 0);
    item.querySelector(".job-count").textContent = total ? `${done} of ${total} tiles` : "";
    item.querySelector(".job-eta").textContent = eta(job);
    const cancelButton = item.querySelector(".job-cancel");
    if (cancelButton) cancelButton.classList.toggle("hidden", FINAL.has(job.status) || job.cancel_requested);
    const errors = job.errors || [];
    const last = errors[errors.length - 1];
    const message = last && typeof last === "object" ? last.message : last;
    item.querySelector(".job-error").textContent =
      job.status === "failed" || job.status === "cancelled" ? String(message || `job ${job.status}`) : "";
  }

  function updateEmpty() {
    document.getElementById("jobs-empty").classList.toggle("hidden", jobs.size > 0);
  }

  function track(job) {
    let entry = jobs.get(job.id);
    if (!entry) {
      entry = { job, item: jobItem(job), shown: false };
      jobs.set(job.id, entry);
      document.getElementById("jobs").prepend(entry.item);
    }
    entry.job = job;
    renderJob(entry);
    updateEmpty();
    if (!FINAL.has(job.status) && !timer) timer = setInterval(poll, POLL_MS);
    if (job.status === "succeeded" && !entry.shown) {
      entry.shown = true;
      showResults(entry).catch((error) => say(entry.item.querySelector(".job-error"), error.message, true));
    }
  }

  async function jobDatasets(job) {
    try {
      const found = await api("GET", `/api/datasets?job=${encodeURIComponent(job.id)}&limit=50`);
      const ours = found.datasets.filter((dataset) => dataset.job_id === job.id);
      if (ours.length) return ours;
    } catch (error) {
      if (!job.dataset_id) throw error;
    }
    return job.dataset_id ? [await api("GET", `/api/datasets/${encodeURIComponent(job.dataset_id)}`)] : [];
  }

  async function showResults(entry) {
    const datasets = await jobDatasets(entry.job);
    for (const dataset of datasets) await app.addDataset(dataset);
    if (datasets.length) app.zoomTo(datasets);
    app.refreshCatalog();
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const open = [...jobs.values()].filter((entry) => !FINAL.has(entry.job.status));
      if (!open.length) {
        clearInterval(timer);
        timer = null;
        return;
      }
      await Promise.all(open.map(async (entry) => {
        try {
          track(await api("GET", `/api/jobs/${encodeURIComponent(entry.job.id)}`));
        } catch (error) {
          entry.item.querySelector(".job-error").textContent = error.message;
        }
      }));
    } finally {
      polling = false;
    }
  }

  async function loadOpenJobs() {
    const lists = await Promise.allSettled(["running", "queued"].map((status) =>
      api("GET", `/api/jobs?status=${status}&limit=20`)));
    const mine = [];
    for (const result of lists) {
      if (result.status !== "fulfilled") continue;
      for (const job of result.value.jobs) {
        if (!user.name || job.requester === user.name) mine.push(job);
      }
    }
    mine.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
    for (const job of mine) track(job);
  }

  // ---- choices from the server ---------------------------------------------------------------

  async function loadChoices() {
    try {
      const found = await api("GET", "/api/indices");
      // Values in lower case (the engine reads names without regard to case) unless two
      // names differ only by case (BAI and BaI), which keep their own spelling.
      const counts = new Map();
      for (const index of found.indices) {
        const key = index.name.toLowerCase();
        counts.set(key, (counts.get(key) || 0) + 1);
      }
      const valueOf = (name) => (counts.get(name.toLowerCase()) === 1 ? name.toLowerCase() : name);
      const options = found.indices.map((index) => el("option",
        { value: valueOf(index.name), title: index.long_name || "" },
        index.long_name ? `${index.name} (${index.long_name})` : index.name));
      if (options.length) {
        const chosen = fields.index.value;
        fields.index.replaceChildren(...options);
        fields.index.value = chosen;
        if (!fields.index.value) fields.index.value = options[0].value;
      }
    } catch (error) {
      // keep the built-in ndvi choice
    }
    try {
      const found = await api("GET", "/api/sources");
      const options = found.sources.map((source) => el("option", { value: source.url || "" }, source.label));
      if (options.length) fields.source.replaceChildren(...options);
    } catch (error) {
      // keep the default source
    }
  }

  if (!user.may("editor")) {
    // the server renders the form disabled with a note; this keeps a stale page honest
    document.getElementById("request-fieldset").disabled = true;
    form.classList.add("disabled");
  }
  describeArea();
  loadChoices();
  loadOpenJobs().catch(() => {});
  app.requestBody = requestBody;
})();
