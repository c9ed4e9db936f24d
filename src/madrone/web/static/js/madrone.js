// What every madrone page shares: the REST API client (JSON in, JSON out, errors as the
// server's message), the CSRF token of the session, the signed-in user and safe DOM building.
// Pages never build HTML from strings: text goes in through textContent, so names a user
// typed are shown as typed and never run.
"use strict";

(function () {
  function meta(name) {
    const element = document.querySelector(`meta[name="${name}"]`);
    return element ? element.content : "";
  }

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  // Call the API. `body` is a plain object (sent as JSON), a FormData (multipart) or absent.
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    const csrf = meta("csrf-token");
    if (csrf && method !== "GET") headers["X-CSRFToken"] = csrf;
    const options = { method, headers, credentials: "same-origin" };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 204) return null;
    let data = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) data = await response.json();
    if (!response.ok) {
      const message = data && data.error ? data.error.message : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message, data);
    }
    return data;
  }

  // An element with attributes and children; strings become text nodes, never HTML.
  function el(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") element.className = value;
      else if (name === "dataset") Object.assign(element.dataset, value);
      else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  // Show a message in a page's status line (role="status" or "alert" for errors).
  function say(target, message, isError) {
    const element = typeof target === "string" ? document.getElementById(target) : target;
    if (!element) return;
    element.textContent = message || "";
    element.classList.toggle("error", Boolean(isError));
    element.setAttribute("role", isError ? "alert" : "status");
  }

  const ROLES = ["viewer", "editor", "admin"];
  const user = { name: meta("madrone-user"), role: meta("madrone-role") };
  user.may = (role) => ROLES.indexOf(user.role) >= ROLES.indexOf(role) && user.role !== "";

  function formatDate(text) {
    if (!text) return "unknown";
    return text.slice(0, 10);
  }

  // -- links to the map and to a dataset's files ---------------------------------------

  // The centre and a zoom that fits bbox [w, s, e, n] in a map of at least 800 x 500 pixels
  // (256-pixel Web Mercator tiles; the map page's sidebar takes part of a laptop screen);
  // a point gets a street-level zoom.
  function viewOf(bbox) {
    let [west, south, east, north] = bbox.map(Number);
    if (west > east) east += 360; // crosses the antimeridian
    let lon = (west + east) / 2;
    if (lon > 180) lon -= 360;
    const lat = (south + north) / 2;
    const lonSpan = east - west;
    const latSpan = (north - south) / Math.max(Math.cos((lat * Math.PI) / 180), 0.05);
    let zoom = 14;
    if (lonSpan > 0 || latSpan > 0) {
      const byLon = lonSpan > 0 ? Math.log2((800 * 360) / (256 * lonSpan)) : 18;
      const byLat = latSpan > 0 ? Math.log2((500 * 360) / (256 * latSpan)) : 18;
      zoom = Math.floor(Math.min(byLon, byLat));
    }
    zoom = Math.max(1, Math.min(18, zoom));
    return { zoom, lat: Number(lat.toFixed(5)), lon: Number(lon.toFixed(5)) };
  }

  // The map page showing the dataset alone, fitted to its bbox (the map's URL state).
  function showOnMap(dataset) {
    const view = viewOf(dataset.bbox);
    const id = encodeURIComponent(dataset.id);
    return `/#map=${view.zoom}/${view.lat}/${view.lon}&layers=${id}:1`;
  }

  function assetUrl(dataset, key) {
    return `/api/datasets/${encodeURIComponent(dataset.id)}/assets/${encodeURIComponent(key)}`;
  }


  window.madrone = {
    api, ApiError, el, say, meta, user, formatDate,
    links: { viewOf, showOnMap, assetUrl },
    basemapUrl: meta("madrone-basemap"),
    hasCentral: meta("madrone-central") === "yes",
  };

  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("nav [data-nav]")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
  }
})();
