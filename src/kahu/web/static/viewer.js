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
  start().catch(function (error) {
    state.error = String(error);
    status.textContent = "The image could not be shown: " + error;
    status.classList.add("error");
  });
})();
