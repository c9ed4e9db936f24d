// The upload page: a file (GeoTIFF, PNG/JPEG with two corners, GeoJSON) or a point, sent to
// POST /api/uploads. Files over the site's limit are refused before sending; the server's
// refusals (its message) show beside the form; a raster the server cannot place asks for
// corners (422 CornersNeeded) and the user sends it again with them.
"use strict";

(function () {
  const { api, el, user } = window.madrone;
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

  // A status line: text or nodes; errors are alerts so screen readers announce them.
  function show(id, isError, ...content) {
    const element = document.getElementById(id);
    element.replaceChildren(...content.map((part) => (part instanceof Node ? part : document.createTextNode(part))));
    element.classList.toggle("error", isError);
    element.classList.toggle("success", !isError && content.length > 0);
    element.setAttribute("role", isError ? "alert" : "status");
  }

  function added(id, dataset) {
    show(
      id,
      false,
      `Added ${dataset.name}: `,
      el("a", { href: window.madrone.links.showOnMap(dataset), class: "show-on-map" }, "show on map"),
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
      return { error: "The upper-left latitude must be north of (greater than) the lower-right one.", input };
    }
    return { value: values.join(",") };
  }

  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    show("upload-status", false);
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
    show("upload-status", true, `${file.name} is ${size} MB: the limit is ${maxMb} MB.`);
  }

  function busy(formElement, isBusy) {
    for (const button of formElement.querySelectorAll("button[type=submit]")) button.disabled = isBusy;
    formElement.setAttribute("aria-busy", isBusy ? "true" : "false");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file) {
      show("upload-status", true, "Choose a file to upload.");
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
        show("upload-status", true, given.error);
        given.input.focus();
        return;
      }
      body.append("corners", given.value);
    }
    busy(form, true);
    progress.hidden = false;
    show("upload-status", false, `Uploading ${file.name}…`);
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
        show("upload-status", true, `${message} Enter its corners below and upload again.`);
        document.getElementById(CORNER_FIELDS[0].id).focus();
      } else {
        show("upload-status", true, error.message);
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
        show("point-status", true, `Give the ${check.label} as degrees between -${check.limit} and ${check.limit}.`);
        input.focus();
        return;
      }
      body.append(check.id.slice("point-".length), text);
    }
    const name = document.getElementById("point-name");
    if (!name.value.trim()) {
      show("point-status", true, "Give the point a name.");
      name.focus();
      return;
    }
    body.append("name", name.value.trim());
    body.append("description", document.getElementById("point-description").value);
    busy(pointForm, true);
    show("point-status", false, "Adding…");
    try {
      const dataset = await api("POST", "/api/uploads", body);
      pointForm.reset();
      added("point-status", dataset);
    } catch (error) {
      show("point-status", true, error.message);
    } finally {
      busy(pointForm, false);
    }
  });

  // The template already disables both forms for viewers; this keeps a stale page honest.
  if (!user.may("editor")) {
    for (const fieldset of document.querySelectorAll("#upload-form > fieldset, #point-form > fieldset")) {
      fieldset.disabled = true;
    }
  }
})();
