// The viewer page: the series and its segmentations in NiiVue (from npm, served locally).
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("viewer-config").textContent);
  const status = document.getElementById("viewer-status");
  const nv = new window.niivue.Niivue({ backColor: [0, 0, 0, 1], show3Dcrosshair: true });
  const state = { nv: nv, ready: false, error: null };
  window.kahuViewer = state;

  function labelMap(segments) {
    const map = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""] };
    segments.forEach(function (s) {
      map.R.push(s.rgb[0]); map.G.push(s.rgb[1]); map.B.push(s.rgb[2]); map.A.push(255);
      map.I.push(s.value); map.labels.push(s.label);
    });
    return map;
  }

  async function start() {
    await nv.attachTo("viewer-canvas");
    const volumes = [{ url: config.volume, name: "image.nii.gz" }];
    config.overlays.forEach(function (o) {
      volumes.push({ url: o.url, name: "labels.nii.gz", opacity: 0.5 });
    });
    await nv.loadVolumes(volumes);
    config.overlays.forEach(function (o, i) {
      nv.volumes[i + 1].setColormapLabel(labelMap(o.segments));
    });
    nv.setSliceType(nv.sliceTypeMultiplanar);
    nv.updateGLVolume();
    state.ready = true;
    status.textContent = "Ready: scroll or drag in the image to move through the slices.";
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button");
    if (!button || !state.ready) { return; }
    const layout = button.getAttribute("data-layout");
    if (layout) {
      const types = { axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal,
        sagittal: nv.sliceTypeSagittal, multiplanar: nv.sliceTypeMultiplanar };
      nv.setSliceType(types[layout]);
    }
    if (button.hasAttribute("data-center")) {
      const center = Number(button.getAttribute("data-center"));
      const width = Number(button.getAttribute("data-width"));
      nv.volumes[0].cal_min = center - width / 2;
      nv.volumes[0].cal_max = center + width / 2;
      nv.updateGLVolume();
    }
  });
  document.addEventListener("change", function (event) {
    if (!state.ready) { return; }
    const toggle = event.target.getAttribute("data-overlay-toggle");
    const slider = document.getElementById("opacity");
    if (toggle !== null || event.target === slider) {
      config.overlays.forEach(function (o, i) {
        const box = document.querySelector('[data-overlay-toggle="' + i + '"]');
        nv.setOpacity(i + 1, box && box.checked ? Number(slider.value) : 0);
      });
    }
  });
  // Keyboard: with the image focused (Tab), arrows move the cross in the slice, Page Up/Down
  // (or + and -) move through the slices, Enter or Space paints at the cross while drawing.
  const canvas = document.getElementById("viewer-canvas");
  function axes() {
    // [right, up, through] as voxel axes of the slice shown (all three: the axial one)
    const type = nv.opts.sliceType;
    if (type === nv.sliceTypeCoronal) { return [0, 2, 1]; }
    if (type === nv.sliceTypeSagittal) { return [1, 2, 0]; }
    return [0, 1, 2];
  }
  function where() {
    const vox = nv.frac2vox(nv.scene.crosshairPos);
    const dims = nv.volumes[0].dims;
    const through = axes()[2];
    return "Slice " + (vox[through] + 1) + " of " + dims[through + 1] +
      " (voxel " + Array.from(vox).join(", ") + ").";
  }
  canvas.addEventListener("keydown", function (event) {
    if (!state.ready || event.altKey || event.ctrlKey || event.metaKey) { return; }
    const [right, up, through] = axes();
    const steps = { ArrowLeft: [right, -1], ArrowRight: [right, 1], ArrowUp: [up, 1],
      ArrowDown: [up, -1], PageUp: [through, 1], "+": [through, 1], PageDown: [through, -1],
      "-": [through, -1] };
    const drawing = drawToggle && drawToggle.getAttribute("aria-pressed") === "true";
    if (steps[event.key]) {
      const move = [0, 0, 0];
      move[steps[event.key][0]] = steps[event.key][1];
      nv.moveCrosshairInVox(move[0], move[1], move[2]);
    } else if (drawing && (event.key === "Enter" || event.key === " ")) {
      const vox = nv.frac2vox(nv.scene.crosshairPos);
      nv.drawPt(vox[0], vox[1], vox[2], 1);
      nv.refreshDrawing(true);
      state.painted = (state.painted || 0) + 1;
    } else {
      return;
    }
    event.preventDefault();
    status.textContent = where();
  });
  function cookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }
  const drawToggle = document.getElementById("draw-toggle");
  if (drawToggle) {
    drawToggle.addEventListener("click", function () {
      if (!state.ready) { return; }
      const on = drawToggle.getAttribute("aria-pressed") !== "true";
      drawToggle.setAttribute("aria-pressed", String(on));
      drawToggle.textContent = on ? "Drawing (click to stop)" : "Draw";
      nv.setDrawingEnabled(on);
      nv.setPenValue(1, false);
      if (on) {
        status.textContent = "Drawing: drag in the image, or focus it and press Enter or " +
          "Space to paint at the cross (arrows and Page Up/Down move it).";
      }
    });
    document.getElementById("draw-save").addEventListener("click", async function () {
      if (!state.ready) { return; }
      status.classList.remove("error");
      status.textContent = "Saving…";
      try {
        const bytes = await nv.saveImage({ filename: "", isSaveDrawing: true, volumeByIndex: 0 });
        const label = document.getElementById("draw-label").value || "drawing";
        const response = await fetch(
          "/api/v1/series/" + encodeURIComponent(config.series) + "/segmentations?label=" +
            encodeURIComponent(label),
          { method: "POST", body: bytes, credentials: "same-origin",
            headers: { "Content-Type": "application/octet-stream",
              "X-CSRF-Token": cookie("kahu_csrf") } });
        const answer = await response.json();
        if (!response.ok) { throw new Error(answer.detail || response.statusText); }
        state.saved = answer.series_uid;
        status.textContent = "Saved as segmentation series " + answer.series_uid + ".";
      } catch (error) {
        status.textContent = "The drawing was not saved: " + error.message;
        status.classList.add("error");
      }
    });
  }
  start().catch(function (error) {
    state.error = String(error);
    status.textContent = "The image could not be shown: " + error;
    status.classList.add("error");
  });
})();
