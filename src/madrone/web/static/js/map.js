// The map page: a Leaflet map of the catalog's datasets with a layer list (show, hide,
// opacity, order, zoom, legend), the datasets in the current view, pixel values on click and
// the view kept in the URL hash. swipe.js and request.js build on `window.madroneMap`.
// All text from the server goes into the page through madrone.el (text nodes), never HTML.
"use strict";

(function () {
  const { api, el, say } = window.madrone;

  const RASTER_KINDS = new Set(["index", "geotiff"]);
  const VECTOR_COLOURS = ["#d9480f", "#1c7ed6", "#7048e8", "#0b7285", "#c2255c", "#5c940d"];
  const FIRST_PANE_Z = 300; // above the basemap (tilePane 200), below drawn shapes (400)

  L.Icon.Default.prototype.options.imagePath = "/vendor/leaflet/images/";

  const map = L.map("map", { zoomControl: true, worldCopyJump: true, minZoom: 1 });
  if (window.madrone.basemapUrl) {
    L.tileLayer(window.madrone.basemapUrl, { maxZoom: 19, crossOrigin: false }).addTo(map);
  } else {
    map.getContainer().classList.add("no-basemap");
  }
  L.control.scale({ imperial: false, position: "bottomright" }).addTo(map);

  // Layers in draw order: the last is on top. Each has its own pane, so its z-index and
  // opacity apply to whatever Leaflet draws for it (tiles, image, shapes, markers).
  const layers = [];
  const events = new EventTarget();
  let paneCount = 0;
  let restoring = false;

  function emit(name, detail) {
    events.dispatchEvent(new CustomEvent(name, { detail }));
  }

  function isRaster(dataset) {
    return RASTER_KINDS.has(dataset.kind);
  }

  function findLayer(id) {
    return layers.find((layer) => layer.id === id) || null;
  }

  function boundsOf(dataset) {
    const [west, south, east, north] = dataset.bbox;
    return L.latLngBounds([south, west], [north, east]);
  }

  function assetKey(dataset, test, preferred) {
    const assets = dataset.assets || {};
    if (preferred && assets[preferred]) return preferred;
    return Object.keys(assets).find((key) => test(String(assets[key].type || ""), key)) || null;
  }

  const assetUrl = window.madrone.links.assetUrl;

  // A popup of a feature's properties (or a point's name and description), text only.
  function propertiesPopup(title, properties) {
    const rows = Object.entries(properties || {}).filter(([, value]) => value !== null);
    return el("div", { class: "feature-popup" },
      title ? el("strong", {}, title) : null,
      rows.length
        ? el("table", {}, rows.map(([key, value]) => el("tr", {},
          el("th", {}, key),
          el("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value)))))
        : null);
  }

  function stopClick(event) {
    L.DomEvent.stopPropagation(event); // a feature's click is not a pixel query
  }

  // The Leaflet layer of a dataset in `pane`; vector datasets fetch their GeoJSON first.
  async function leafletLayer(dataset, pane, colour) {
    const id = encodeURIComponent(dataset.id);
    if (isRaster(dataset)) {
      return L.tileLayer(`/tiles/${id}/{z}/{x}/{y}.png`, {
        pane, bounds: boundsOf(dataset), maxZoom: 22, tileSize: 256,
      });
    }
    if (dataset.kind === "image") {
      const key = assetKey(dataset, (type) => type.startsWith("image/"), "image");
      if (!key) throw new Error(`image dataset ${dataset.name} has no image asset`);
      return L.imageOverlay(assetUrl(dataset, key), boundsOf(dataset), { pane, interactive: false });
    }
    const style = { color: colour, weight: 2, fillColor: colour, fillOpacity: 0.25 };
    const options = {
      pane,
      style: () => style,
      pointToLayer: (feature, latlng) => L.marker(latlng, { pane }),
    };
    let data;
    let popupOf;
    if (dataset.kind === "point") {
      data = { type: "Feature", properties: {}, geometry: dataset.footprint };
      popupOf = () => propertiesPopup(dataset.name, { description: dataset.description || "" });
    } else {
      const key = assetKey(dataset, (type, name) => type.includes("json") || name === "data", "data");
      if (!key) throw new Error(`vector dataset ${dataset.name} has no GeoJSON asset`);
      const response = await fetch(assetUrl(dataset, key), { credentials: "same-origin" });
      if (!response.ok) throw new Error(`could not read the GeoJSON of ${dataset.name} (${response.status})`);
      data = await response.json();
      popupOf = (feature) => propertiesPopup(dataset.name, feature.properties);
    }
    return L.geoJSON(data, {
      ...options,
      onEachFeature: (feature, layer) => {
        layer.bindPopup(() => popupOf(feature));
        layer.on("click", stopClick);
      },
    });
  }

  // ---- legends ---------------------------------------------------------------------------

  function formatNumber(value) {
    if (value === null || value === undefined || !Number.isFinite(Number(value))) return "";
    const number = Number(value);
    return Math.abs(number) >= 1000 ? number.toFixed(0) : String(Number(number.toPrecision(3)));
  }

  async function fillLegend(layer) {
    const box = layer.legendBox;
    box.replaceChildren();
    if (layer.dataset.kind === "point") {
      box.append(el("img", { class: "swatch-marker", src: `${L.Icon.Default.prototype.options.imagePath}marker-icon.png`,
        alt: "" }), el("span", { class: "legend-label" }, "point"));
      return;
    }
    if (!isRaster(layer.dataset)) {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = layer.colour;
      if (layer.dataset.kind === "image") swatch.classList.add("swatch-image");
      box.append(swatch, el("span", { class: "legend-label" },
        layer.dataset.kind === "image" ? "image placed by its corners" : "shapes"));
      return;
    }
    try {
      const legend = await api("GET", `/tiles/${encodeURIComponent(layer.id)}/legend`);
      const bar = el("div", { class: "legend-bar", role: "img",
        "aria-label": `${legend.label}: ${formatNumber(legend.min)} to ${formatNumber(legend.max)}` });
      bar.style.background = `linear-gradient(to right, ${legend.colors.join(", ")})`;
      box.append(
        el("div", { class: "legend-title" }, legend.label || layer.dataset.index || ""),
        bar,
        el("div", { class: "legend-range" },
          el("span", { class: "legend-min" }, formatNumber(legend.min)),
          el("span", { class: "legend-max" }, formatNumber(legend.max))));
    } catch (error) {
      box.append(el("span", { class: "legend-label hint" }, `no legend (${error.message})`));
    }
  }

  // ---- the layer list ----------------------------------------------------------------------

  function button(className, label, title, onclick) {
    return el("button", { type: "button", class: `icon ${className}`, title, "aria-label": title, onclick }, label);
  }

  function layerItem(layer) {
    const dataset = layer.dataset;
    const visible = el("input", { type: "checkbox", class: "layer-visible", checked: layer.visible,
      "aria-label": `Show ${dataset.name}`,
      onchange: (event) => setVisible(layer, event.target.checked) });
    const opacity = el("input", { type: "range", class: "layer-opacity", min: "0", max: "1", step: "0.05",
      value: String(layer.opacity), "aria-label": `Opacity of ${dataset.name}`,
      oninput: (event) => setOpacity(layer, Number(event.target.value)) });
    layer.legendBox = el("div", { class: "legend" });
    const meta = [dataset.kind, dataset.index, window.madrone.formatDate(dataset.date_start)]
      .filter((part) => part && part !== "unknown").join(" · ");
    return el("li", { class: "layer", dataset: { layerId: layer.id } },
      el("div", { class: "layer-head" },
        visible,
        el("span", { class: "layer-name", title: dataset.name }, dataset.name),
        el("span", { class: "layer-tools" },
          button("layer-up", "▲", "Move up", () => move(layer, +1)),
          button("layer-down", "▼", "Move down", () => move(layer, -1)),
          button("layer-zoom", "⤢", "Zoom to layer", () => zoomTo([layer.dataset])),
          button("layer-remove", "✕", "Remove layer", () => removeLayer(layer.id)))),
      el("div", { class: "layer-body" },
        el("span", { class: "layer-meta" }, meta),
        el("label", { class: "opacity-label" }, "Opacity", opacity),
        layer.legendBox));
  }

  function renderLayers() {
    const list = document.getElementById("layers");
    const shown = layers.filter((layer) => layer.item); // not those still loading
    list.replaceChildren(...shown.slice().reverse().map((layer) => layer.item));
    document.getElementById("layers-empty").classList.toggle("hidden", shown.length > 0);
    layers.forEach((layer, index) => {
      layer.paneElement.style.zIndex = String(FIRST_PANE_Z + index);
      if (!layer.item) return;
      layer.item.querySelector(".layer-up").disabled = index === layers.length - 1;
      layer.item.querySelector(".layer-down").disabled = index === 0;
    });
    markCatalog();
  }

  function changed() {
    renderLayers();
    emit("layers");
    writeHash();
  }

  function setVisible(layer, visible) {
    if (!layer.leaflet) return; // still loading
    layer.visible = visible;
    layer.item.querySelector(".layer-visible").checked = visible;
    layer.item.classList.toggle("off", !visible);
    if (visible) layer.leaflet.addTo(map);
    else map.removeLayer(layer.leaflet);
    emit("layers");
    writeHash();
  }

  function setOpacity(layer, opacity) {
    layer.opacity = Math.min(1, Math.max(0, opacity));
    layer.paneElement.style.opacity = String(layer.opacity);
    if (layer.item) layer.item.querySelector(".layer-opacity").value = String(layer.opacity);
    writeHash();
  }

  function move(layer, step) {
    const index = layers.indexOf(layer);
    const target = index + step;
    if (index < 0 || target < 0 || target >= layers.length) return;
    layers.splice(index, 1);
    layers.splice(target, 0, layer);
    changed();
  }

  // Add a dataset (its JSON) as the top layer; an existing layer is returned as it is.
  async function addDataset(dataset, options = {}) {
    const existing = findLayer(dataset.id);
    if (existing) return existing;
    paneCount += 1;
    const paneName = `dataset-${paneCount}`;
    const paneElement = map.createPane(paneName);
    paneElement.classList.add("dataset-pane");
    const colour = VECTOR_COLOURS[(paneCount - 1) % VECTOR_COLOURS.length];
    const layer = {
      id: dataset.id, dataset, pane: paneName, paneElement, colour,
      visible: options.visible !== false,
      opacity: options.opacity === undefined ? 1 : options.opacity,
    };
    layers.push(layer); // reserve its place in the order while the GeoJSON loads
    try {
      layer.leaflet = await leafletLayer(dataset, paneName, colour);
    } catch (error) {
      layers.splice(layers.indexOf(layer), 1);
      paneElement.remove();
      throw error;
    }
    if (!layers.includes(layer)) return null; // removed while loading
    layer.item = layerItem(layer);
    layer.item.classList.toggle("off", !layer.visible);
    paneElement.style.opacity = String(layer.opacity);
    if (layer.visible) layer.leaflet.addTo(map);
    fillLegend(layer);
    if (!options.quiet) changed();
    return layer;
  }

  function removeLayer(id) {
    const layer = findLayer(id);
    if (!layer) return;
    if (layer.leaflet) map.removeLayer(layer.leaflet);
    layers.splice(layers.indexOf(layer), 1);
    layer.paneElement.remove();
    changed();
  }

  function zoomTo(datasets) {
    if (!datasets.length) return;
    let bounds = boundsOf(datasets[0]);
    for (const dataset of datasets.slice(1)) bounds = bounds.extend(boundsOf(dataset));
    const size = bounds.getNorthEast().distanceTo(bounds.getSouthWest());
    if (size < 1) map.setView(bounds.getCenter(), Math.max(map.getZoom(), 15));
    else map.fitBounds(bounds, { padding: [24, 24], maxZoom: 18 });
  }

  async function addById(id, options = {}) {
    const dataset = await api("GET", `/api/datasets/${encodeURIComponent(id)}`);
    return addDataset(dataset, options);
  }

  // ---- datasets in view --------------------------------------------------------------------

  function viewBbox() {
    const bounds = map.getBounds();
    const clamp = (value, limit) => Math.min(limit, Math.max(-limit, value));
    let west = bounds.getWest();
    let east = bounds.getEast();
    if (east - west >= 360) { west = -180; east = 180; }
    return [clamp(west, 180), clamp(bounds.getSouth(), 90), clamp(east, 180), clamp(bounds.getNorth(), 90)]
      .map((value) => Number(value.toFixed(6)));
  }

  function markCatalog() {
    for (const item of document.querySelectorAll("#catalog-list li[data-dataset-id]")) {
      const on = Boolean(findLayer(item.dataset.datasetId));
      const add = item.querySelector(".add-to-map");
      add.disabled = on;
      add.textContent = on ? "On map" : "Add";
    }
  }

  function catalogItem(dataset, shared) {
    const meta = [dataset.kind, dataset.index, window.madrone.formatDate(dataset.date_start),
      dataset.owner].filter((part) => part && part !== "unknown").join(" · ");
    return el("li", { dataset: { datasetId: dataset.id }, class: shared ? "shared" : "" },
      el("div", { class: "catalog-text" },
        el("span", { class: "catalog-name", title: dataset.name }, dataset.name),
        el("span", { class: "catalog-meta" }, shared ? el("span", { class: "badge" }, "shared") : null, meta)),
      el("button", { type: "button", class: "add-to-map", onclick: async (event) => {
        event.target.disabled = true;
        try {
          await addDataset(dataset);
        } catch (error) {
          say("catalog-status", error.message, true);
          event.target.disabled = false;
        }
      } }, "Add"));
  }

  let catalogRequest = 0;
  async function refreshCatalog() {
    const serial = ++catalogRequest;
    const bbox = viewBbox().join(",");
    const queries = [["local", `/api/datasets?bbox=${bbox}&limit=50`]];
    if (window.madrone.hasCentral) queries.push(["shared", `/api/datasets?catalog=shared&bbox=${bbox}&limit=50`]);
    const results = await Promise.allSettled(queries.map(([, url]) => api("GET", url)));
    if (serial !== catalogRequest) return;
    const items = [];
    const problems = [];
    results.forEach((result, index) => {
      const shared = queries[index][0] === "shared";
      if (result.status === "fulfilled") {
        for (const dataset of result.value.datasets) items.push(catalogItem(dataset, shared));
      } else {
        problems.push(`${queries[index][0]}: ${result.reason.message}`);
      }
    });
    document.getElementById("catalog-list").replaceChildren(...items);
    const more = results.some((result) => result.status === "fulfilled" && result.value.next_cursor);
    if (problems.length) say("catalog-status", problems.join("; "), true);
    else if (!items.length) say("catalog-status", "No datasets in this view.");
    else say("catalog-status", more ? "The first 50 of each catalog: zoom in, or search on the Datasets page." : "");
    markCatalog();
  }

  // ---- pixel values ------------------------------------------------------------------------

  function formatValue(value) {
    return value === null || value === undefined ? "no data" : Number(value).toFixed(4);
  }

  async function pointValues(latlng, rasters) {
    const lon = latlng.lng;
    const lat = latlng.lat;
    const ids = rasters.map((layer) => layer.id).join(",");
    try {
      const body = await api("GET", `/api/values?lon=${lon}&lat=${lat}&ids=${encodeURIComponent(ids)}`);
      return body.values;
    } catch (error) {
      if (error.status !== 404 && error.status !== 405) throw error;
    }
    // Without /api/values: one /tiles/<id>/point per layer (a point outside is no data).
    return Promise.all(rasters.map(async (layer) => {
      try {
        const found = await api("GET", `/tiles/${encodeURIComponent(layer.id)}/point?lon=${lon}&lat=${lat}`);
        return { id: layer.id, value: found.value, date: found.date };
      } catch (error) {
        if (error.status === 404) return { id: layer.id, value: null, date: layer.dataset.date_start };
        throw error;
      }
    }));
  }

  async function showValues(event) {
    if (map.pm && map.pm.globalDrawModeEnabled()) return;
    const rasters = layers.filter((layer) => layer.visible && isRaster(layer.dataset)).reverse();
    if (!rasters.length) return;
    const latlng = event.latlng.wrap();
    const popup = L.popup({ className: "values-popup", maxWidth: 360 })
      .setLatLng(event.latlng)
      .setContent(el("div", { class: "pixel-loading" }, "Reading values…"))
      .openOn(map);
    let content;
    try {
      const values = await pointValues(latlng, rasters);
      const byId = new Map(values.map((entry) => [entry.id, entry]));
      content = el("div", { class: "pixel-values" },
        el("div", { class: "pixel-where" }, `${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}`),
        el("table", {}, rasters.map((layer) => {
          const entry = byId.get(layer.id) || { value: null };
          return el("tr", { dataset: { layerId: layer.id } },
            el("th", { class: "name" }, entry.name || layer.dataset.name),
            el("td", { class: "value" }, formatValue(entry.value)),
            el("td", { class: "date" }, window.madrone.formatDate(entry.date || layer.dataset.date_start)));
        })));
    } catch (error) {
      content = el("div", { class: "pixel-error error" }, error.message);
    }
    if (map.hasLayer(popup)) popup.setContent(content);
  }

  // ---- the view in the URL -----------------------------------------------------------------

  function hashText() {
    const centre = map.getCenter();
    const zoom = map.getZoom();
    const digits = Math.max(5, Math.ceil(Math.log10(2 ** zoom)) + 2);
    const parts = [`map=${zoom}/${centre.lat.toFixed(digits)}/${centre.lng.toFixed(digits)}`];
    if (layers.length) {
      const listed = layers.map((layer) => {
        const opacity = Number(layer.opacity.toFixed(2));
        return `${layer.visible ? "" : "~"}${encodeURIComponent(layer.id)}:${opacity}`;
      });
      parts.push(`layers=${listed.join(",")}`);
    }
    const swipe = window.madroneMap.swipeState ? window.madroneMap.swipeState() : null;
    if (swipe) parts.push(`swipe=${encodeURIComponent(swipe[0])},${encodeURIComponent(swipe[1])}`);
    return `#${parts.join("&")}`;
  }

  function writeHash() {
    if (restoring) return;
    const text = hashText();
    if (window.location.hash !== text) window.history.replaceState(null, "", text);
    const bbox = viewBbox();
    try {
      window.localStorage.setItem("madrone.view", JSON.stringify({ bbox }));
    } catch (error) {
      // storage may be off (private mode): the URL still holds the view
    }
  }

  function parseHash(hash) {
    const state = { view: null, layers: null, swipe: null };
    for (const part of hash.replace(/^#/, "").split("&")) {
      const [key, ...rest] = part.split("=");
      const value = rest.join("=");
      if (key === "map") {
        const [zoom, lat, lon] = value.split("/").map(Number);
        if ([zoom, lat, lon].every(Number.isFinite)) state.view = { zoom, lat, lon };
      } else if (key === "layers") {
        state.layers = value.split(",").filter(Boolean).map((entry) => {
          const hidden = entry.startsWith("~");
          const [id, opacity] = (hidden ? entry.slice(1) : entry).split(":");
          const number = Number(opacity);
          return { id: decodeURIComponent(id), visible: !hidden,
            opacity: opacity === undefined || !Number.isFinite(number) ? 1 : Math.min(1, Math.max(0, number)) };
        });
      } else if (key === "swipe") {
        const ids = value.split(",").map(decodeURIComponent);
        if (ids.length === 2 && ids[0] && ids[1]) state.swipe = ids;
      }
    }
    return state;
  }

  // Make the map what a hash says: view, layers (fetched by id), visibility, opacity, order
  // and swipe. Layers the hash does not list are removed.
  let hashesApplied = 0;
  async function applyHash(hash) {
    hashesApplied += 1;
    const state = parseHash(hash);
    restoring = true;
    try {
      if (state.view) map.setView([state.view.lat, state.view.lon], state.view.zoom, { animate: false });
      if (state.layers) {
        const wanted = new Set(state.layers.map((entry) => entry.id));
        for (const layer of layers.slice()) if (!wanted.has(layer.id)) removeLayer(layer.id);
        const missing = [];
        await Promise.all(state.layers.map(async (entry) => {
          try {
            const layer = findLayer(entry.id) || await addById(entry.id, { ...entry, quiet: true });
            if (!layer) return;
            if (layer.visible !== entry.visible) setVisible(layer, entry.visible);
            setOpacity(layer, entry.opacity);
          } catch (error) {
            missing.push(`${entry.id}: ${error.message}`);
          }
        }));
        const order = state.layers.map((entry) => entry.id);
        layers.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
        renderLayers();
        emit("layers");
        if (missing.length) {
          say("map-status", `Some layers could not be shown: ${missing.join("; ")}`, true);
          setTimeout(() => say("map-status", ""), 10000);
        }
        if (!state.view && layers.length) zoomTo(layers.map((layer) => layer.dataset));
      }
      if (window.madroneMap.setSwipe) window.madroneMap.setSwipe(state.swipe);
    } finally {
      restoring = false;
    }
    writeHash();
  }

  function storedView() {
    try {
      const stored = JSON.parse(window.localStorage.getItem("madrone.view") || "null");
      const bbox = stored && stored.bbox;
      if (Array.isArray(bbox) && bbox.length === 4 && bbox.every(Number.isFinite)) return bbox;
    } catch (error) {
      // a damaged entry is ignored
    }
    return null;
  }

  // ---- start -------------------------------------------------------------------------------

  let catalogTimer = null;
  function viewChanged() {
    writeHash();
    clearTimeout(catalogTimer);
    catalogTimer = setTimeout(refreshCatalog, 250);
  }

  async function start() {
    const hash = window.location.hash;
    const hasView = /(^#|&)map=/.test(hash);
    if (!hasView) {
      const bbox = storedView();
      if (bbox) map.fitBounds([[bbox[1], bbox[0]], [bbox[3], bbox[2]]], { animate: false });
      else map.setView([20, 0], 2, { animate: false });
    }
    if (hash.length > 1) await applyHash(hash);
    map.on("moveend", viewChanged);
    map.on("click", showValues);
    window.addEventListener("hashchange", () => applyHash(window.location.hash));
    if (!hasView && !storedView() && !layers.length) {
      // A first visit: show where the catalog's datasets are.
      try {
        const applied = hashesApplied;
        const found = await api("GET", "/api/datasets?limit=50");
        // unless a new hash (a link followed meanwhile) has set the view
        if (found.datasets.length && applied === hashesApplied) zoomTo(found.datasets);
      } catch (error) {
        say("catalog-status", error.message, true);
      }
    }
    viewChanged();
    emit("ready");
  }

  window.madroneMap = {
    map, layers, events, isRaster, findLayer, addDataset, addById, removeLayer, zoomTo,
    writeHash, refreshCatalog, boundsOf,
  };
  document.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => say("map-status", error.message, true));
  });
})();
