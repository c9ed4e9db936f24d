// The upload page: a file (GeoTIFF, PNG/JPEG with two corners, GeoJSON) or a point, sent to
// POST /api/uploads. Files over the site's limit are refused before sending; the server's
// refusals (its message) show beside the form; a raster the server cannot place asks for
// corners (422 CornersNeeded) and the user sends it again with them.
"use strict";

(function () {
  const { api, el, user, links } = window.madrone;
  const MB = 1024 * 1024;
  const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"];

  const form = document.getElementById("upload-form");
  const fileInput = document.getElementById("upload-file");
  const nameInput = document.getElementById("upload-name");
  const corners = document.getElementById("upload-corners");
  const progress = document.getElementById("upload-progress");
  const CORNER_FIELDS = [
    { id: "upload-ul-lat", label: "upper-left latitude", limit: 90 },
    { id: "upload-ul-lon", label: "upper-left longitude", limit: 180 },
    { id: "upload-lr-lat", label: "lower-right latitude", limit: 90 },
    { id: "upload-lr-lon", label: "lower-right longitude", limit: 180 },
  ];
  const pointForm = document.getElementById("point-form");
  const maxMb = Number(form.dataset.maxMb);

  // A status line of text and nodes, as "error" (an alert screen readers announce),
  // "success" or "progress".
  function show(id, kind, ...content) {
    const element = document.getElementById(id);
    const nodes = content.map((part) => (part instanceof Node ? part : String(part)));
    element.replaceChildren(...nodes);
    element.classList.toggle("error", kind === "error");
    element.classList.toggle("success", kind === "success");
    element.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  function added(id, dataset) {
    show(
      id,
      "success",
      `Added ${dataset.name}: `,
      el("a", { href: links.showOnMap(dataset), class: "show-on-map" }, "show on map"),
      " · ",
      el("a", { href: "/datasets", class: "datasets-link" }, "datasets"),
    );
  }

  function isImageName(name) {
    const lower = name.toLowerCase();
    return IMAGE_EXTENSIONS.some((extension) => lower.endsWith(extension));
  }

  function showCorners(visible) {
    corners.hidden = !visible;
    for (const field of CORNER_FIELDS) document.getElementById(field.id).required = visible;
  }

  // "ul_lat,ul_lon,lr_lat,lr_lon", or an error naming the first bad field.
  function readCorners() {
    const values = [];
    for (const field of CORNER_FIELDS) {
      const input = document.getElementById(field.id);
      const text = input.value.trim();
      const value = Number(text);
      if (text === "" || !Number.isFinite(value)) {
        return { error: `Give the ${field.label} as a number of degrees.`, input };
      }
      if (Math.abs(value) > field.limit) {
        return { error: `The ${field.label} ${value} is outside ±${field.limit}°.`, input };
      }
      values.push(value);
    }
    const [ulLat, , lrLat] = values;
    if (ulLat <= lrLat) {
      const input = document.getElementById("upload-ul-lat");
      const error = "The upper-left latitude must be north of (greater than) the lower-right one.";
      return { error, input };
    }
    return { value: values.join(",") };
  }

  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    show("upload-status", "progress");
    if (!file) return;
    if (!nameInput.value.trim() || nameInput.dataset.fromFile === "yes") {
      nameInput.value = file.name.replace(/\.[^.]*$/, "");
      nameInput.dataset.fromFile = "yes";
    }
    showCorners(isImageName(file.name) || !corners.hidden);
    if (file.size > maxMb * MB) refuseSize(file);
  });

  nameInput.addEventListener("input", () => {
    nameInput.dataset.fromFile = "no";
  });

  function refuseSize(file) {
    const size = (file.size / MB).toFixed(1);
    show("upload-status", "error", `${file.name} is ${size} MiB: the limit is ${maxMb} MiB.`);
  }

  function busy(formElement, isBusy) {
    for (const button of formElement.querySelectorAll("button[type=submit]")) {
      button.disabled = isBusy;
    }
    formElement.setAttribute("aria-busy", isBusy ? "true" : "false");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file) {
      show("upload-status", "error", "Choose a file to upload.");
      fileInput.focus();
      return;
    }
    if (file.size > maxMb * MB) {
      refuseSize(file);
      return;
    }
    const body = new FormData();
    body.append("file", file, file.name);
    body.append("name", nameInput.value.trim() || file.name.replace(/\.[^.]*$/, ""));
    body.append("description", document.getElementById("upload-description").value);
    if (!corners.hidden) {
      const given = readCorners();
      if (given.error) {
        show("upload-status", "error", given.error);
        given.input.focus();
        return;
      }
      body.append("corners", given.value);
    }
    busy(form, true);
    progress.hidden = false;
    show("upload-status", "progress", `Uploading ${file.name}…`);
    try {
      const dataset = await api("POST", "/api/uploads", body);
      form.reset();
      nameInput.dataset.fromFile = "no";
      showCorners(false);
      added("upload-status", dataset);
    } catch (error) {
      const type = error.body && error.body.error ? error.body.error.type : "";
      if (type === "CornersNeeded") {
        showCorners(true);
        const message = /[.!?]$/.test(error.message) ? error.message : `${error.message}.`;
        show("upload-status", "error", `${message} Enter its corners below and upload again.`);
        document.getElementById(CORNER_FIELDS[0].id).focus();
      } else {
        show("upload-status", "error", error.message);
      }
    } finally {
      busy(form, false);
      progress.hidden = true;
    }
  });

  pointForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checks = [
      { id: "point-lat", label: "latitude", limit: 90 },
      { id: "point-lon", label: "longitude", limit: 180 },
    ];
    const body = new FormData();
    body.append("kind", "point");
    for (const check of checks) {
      const input = document.getElementById(check.id);
      const text = input.value.trim();
      const value = Number(text);
      if (text === "" || !Number.isFinite(value) || Math.abs(value) > check.limit) {
        const range = `between -${check.limit} and ${check.limit}`;
        show("point-status", "error", `Give the ${check.label} as degrees ${range}.`);
        input.focus();
        return;
      }
      body.append(check.id.slice("point-".length), text);
    }
    const name = document.getElementById("point-name");
    if (!name.value.trim()) {
      show("point-status", "error", "Give the point a name.");
      name.focus();
      return;
    }
    body.append("name", name.value.trim());
    body.append("description", document.getElementById("point-description").value);
    busy(pointForm, true);
    show("point-status", "progress", "Adding…");
    try {
      const dataset = await api("POST", "/api/uploads", body);
      pointForm.reset();
      added("point-status", dataset);
    } catch (error) {
      show("point-status", "error", error.message);
    } finally {
      busy(pointForm, false);
    }
  });

  // The template already disables both forms for viewers; this keeps a stale page honest.
  if (!user.may("editor")) {
    const fieldsets = document.querySelectorAll("#upload-form > fieldset, #point-form > fieldset");
    for (const fieldset of fieldsets) {
      fieldset.disabled = true;
    }
  }
})();
