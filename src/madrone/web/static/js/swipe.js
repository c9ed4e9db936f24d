// Swipe: compare two raster layers side by side. The left layer's pane is clipped to the
// left of a draggable divider and the right layer's to its right; the clip is recomputed in
// the panes' own coordinates whenever the map or the divider moves.
"use strict";

(function () {
  const { el, say } = window.madrone;
  const app = window.madroneMap;
  const map = app.map;
  const left = document.getElementById("swipe-left");
  const right = document.getElementById("swipe-right");
  const toggle = document.getElementById("swipe-toggle");
  const divider = document.getElementById("swipe-divider");
  let on = false;
  let fraction = 0.5; // the divider's place across the map
  let clipped = [];

  function rasterLayers() {
    return app.layers.filter((layer) => app.isRaster(layer.dataset));
  }

  function fillSelect(select, fallback) {
    const current = select.value;
    const options = rasterLayers().map((layer) => el("option", { value: layer.id }, layer.dataset.name));
    select.replaceChildren(el("option", { value: "" }, "choose a raster layer"), ...options);
    const ids = rasterLayers().map((layer) => layer.id);
    select.value = ids.includes(current) ? current : fallback && ids.includes(fallback) ? fallback : "";
  }

  function unclip() {
    for (const pane of clipped) pane.style.clip = "";
    clipped = [];
  }

  function dividerX() {
    return Math.round(map.getSize().x * fraction);
  }

  function update() {
    unclip();
    if (!on) return;
    const leftLayer = app.findLayer(left.value);
    const rightLayer = app.findLayer(right.value);
    if (!leftLayer || !rightLayer) return;
    const size = map.getSize();
    const x = dividerX();
    divider.style.left = `${x}px`;
    const topLeft = map.containerPointToLayerPoint([0, 0]);
    const bottomRight = map.containerPointToLayerPoint(size);
    const cut = map.containerPointToLayerPoint([x, 0]).x;
    leftLayer.paneElement.style.clip =
      `rect(${topLeft.y}px, ${cut}px, ${bottomRight.y}px, ${topLeft.x}px)`;
    rightLayer.paneElement.style.clip =
      `rect(${topLeft.y}px, ${bottomRight.x}px, ${bottomRight.y}px, ${cut}px)`;
    clipped = [leftLayer.paneElement, rightLayer.paneElement];
  }

  function setOn(value) {
    const leftLayer = app.findLayer(left.value);
    const rightLayer = app.findLayer(right.value);
    if (value && (!leftLayer || !rightLayer || leftLayer === rightLayer)) {
      say("swipe-status", "Choose two different raster layers to compare.", true);
      value = false;
    } else {
      say("swipe-status", value ? "Drag the bar across the map to compare." : "");
    }
    on = value;
    toggle.setAttribute("aria-pressed", String(on));
    toggle.classList.toggle("primary", on);
    toggle.textContent = on ? "Stop swipe" : "Swipe";
    divider.classList.toggle("hidden", !on);
    if (on) {
      // Both sides must be drawn to be compared.
      for (const layer of [leftLayer, rightLayer]) {
        const box = layer.item && layer.item.querySelector(".layer-visible");
        if (!layer.visible && box) box.click();
      }
    }
    update();
    app.writeHash();
  }

  // Drag the divider with a mouse, a pen or a finger; arrow keys move it too.
  let dragging = false;
  divider.addEventListener("pointerdown", (event) => {
    dragging = true;
    divider.setPointerCapture(event.pointerId);
    divider.classList.add("dragging");
    event.preventDefault();
  });
  divider.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const box = map.getContainer().getBoundingClientRect();
    fraction = Math.min(0.98, Math.max(0.02, (event.clientX - box.left) / box.width));
    update();
  });
  const stop = () => {
    dragging = false;
    divider.classList.remove("dragging");
  };
  divider.addEventListener("pointerup", stop);
  divider.addEventListener("pointercancel", stop);
  divider.addEventListener("keydown", (event) => {
    const step = { ArrowLeft: -0.02, ArrowRight: 0.02 }[event.key];
    if (!step) return;
    fraction = Math.min(0.98, Math.max(0.02, fraction + step));
    update();
    event.preventDefault();
  });

  toggle.addEventListener("click", () => setOn(!on));
  for (const select of [left, right]) {
    select.addEventListener("change", () => {
      if (on) setOn(true);
    });
  }
  map.on("move zoomend resize viewreset", update);

  app.events.addEventListener("layers", () => {
    // By default compare the two top raster layers: the lower on the left.
    const ids = rasterLayers().map((layer) => layer.id).reverse();
    fillSelect(right, ids[0] || "");
    fillSelect(left, ids.find((id) => id !== right.value) || "");
    if (left.value && left.value === right.value) {
      left.value = ids.find((id) => id !== right.value) || "";
    }
    if (on && (!app.findLayer(left.value) || !app.findLayer(right.value))) setOn(false);
    else update();
  });

  app.swipeState = () => (on ? [left.value, right.value] : null);
  // Restore from the URL: swipe on between two listed layers, or off (null).
  app.setSwipe = (ids) => {
    if (!ids) {
      if (on) setOn(false);
      return;
    }
    fillSelect(left, ids[0]);
    fillSelect(right, ids[1]);
    left.value = ids[0];
    right.value = ids[1];
    if (left.value === ids[0] && right.value === ids[1]) setOn(true);
  };
  app.swipeDivider = () => divider;
})();
