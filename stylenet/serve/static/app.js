// stylenet's page: pick styles and a photo, get the stylized image back from POST /v1/stylize.
// Plain JavaScript, no build step. The camera mode sends one frame at a time (the next as soon
// as the previous comes back), so the frame rate shown is what the server sustains.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { styles: [], chosen: new Map(), photo: null, painting: null, busy: false, again: false, camera: null };

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = !msg;
}

async function api(path, options) {
  const res = await fetch(path, options);
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

// ---------------------------------------------------------------------------------- styles
async function loadStyles() {
  const health = await (await api("/healthz")).json();
  $("server").textContent = `${health.device}, ${health.precision} · ${health.styles} styles`;
  const data = await (await api("/v1/styles")).json();
  state.styles = data.styles;
  const sizes = [256, 384, 512, 768, 1024, 1536, 2048].filter((s) => s <= data.defaults.max_size_limit);
  for (const s of sizes) {
    const opt = new Option(`${s} px`, s, false, s === data.defaults.max_size);
    $("size").add(opt);
  }
  const gallery = $("gallery");
  for (const s of state.styles) {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.className = "tile";
    tile.dataset.index = s.index;
    tile.dataset.testid = `style-${s.name}`;
    tile.setAttribute("data-testid", `style-${s.name}`);
    tile.title = s.name;
    // Checkpoints from before thumbnails were stored show the initials of the name instead.
    const initials = s.name.split(/[_\s-]+/).map((w) => w[0] || "").join("").slice(0, 3).toUpperCase();
    tile.innerHTML = s.thumbnail_url
      ? `<img src="${s.thumbnail_url}" alt="${s.name}">`
      : `<div class="swatch">${initials}</div>`;
    tile.append(document.createTextNode(s.name.replace(/_/g, " ")));
    tile.addEventListener("click", () => toggleStyle(s.name, tile));
    gallery.append(tile);
  }
  if (data.predictor) gallery.append(paintingTile());
  if (state.styles.length) toggleStyle(state.styles[0].name, gallery.firstChild);
}

// A painting of the user's own as a style (the checkpoint's style predictor): pick or drop a
// file on this tile; it joins the mix as "upload" and travels with each request as style_image.
function paintingTile() {
  const tile = document.createElement("label");
  tile.className = "tile";
  tile.title = "your own painting as the style";
  tile.setAttribute("data-testid", "style-upload");
  tile.innerHTML = `<div class="swatch">+</div>your painting
    <input type="file" accept="image/*" hidden data-testid="style-file">`;
  const input = tile.querySelector("input");
  const use = (file) => {
    if (!file) return;
    state.painting = file;
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = "your painting";
    tile.querySelector(".swatch, img").replaceWith(img);
    if (!state.chosen.has("upload")) toggleStyle("upload", tile);
    else restylize();
  };
  input.addEventListener("change", () => use(input.files[0]));
  tile.addEventListener("dragover", (e) => e.preventDefault());
  tile.addEventListener("drop", (e) => {
    e.preventDefault();
    use(e.dataTransfer.files[0]);
  });
  return tile;
}

function toggleStyle(name, tile) {
  if (state.chosen.has(name)) {
    if (state.chosen.size === 1) return; // always at least one
    state.chosen.delete(name);
    tile.classList.remove("selected");
  } else {
    state.chosen.set(name, 1);
    tile.classList.add("selected");
  }
  renderMix();
  restylize();
}

function renderMix() {
  const box = $("mix");
  box.innerHTML = "";
  if (state.chosen.size < 2) return;
  for (const [name, share] of state.chosen) {
    const label = document.createElement("label");
    label.textContent = `${name.replace(/_/g, " ")} `;
    const out = document.createElement("output");
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: 1, step: 0.05, value: share });
    slider.setAttribute("data-testid", `mix-${name}`);
    out.textContent = Number(share).toFixed(2);
    slider.addEventListener("input", () => {
      state.chosen.set(name, Number(slider.value));
      out.textContent = Number(slider.value).toFixed(2);
      restylize();
    });
    label.append(out, slider);
    box.append(label);
  }
}

function styleSpec() {
  const parts = [...state.chosen].filter(([, w]) => w > 0);
  if (!parts.length) return [...state.chosen.keys()][0];
  return parts.map(([n, w]) => `${n}=${w}`).join(",");
}

function formFor(blob, size) {
  const form = new FormData();
  form.append("image", blob, "image.jpg");
  form.append("style", styleSpec());
  form.append("strength", $("strength").value);
  form.append("stroke_scale", $("stroke").value);
  form.append("preserve_color", $("preserve").checked ? "true" : "false");
  form.append("palette", $("palette").value);
  form.append("max_size", size);
  if (state.painting && state.chosen.has("upload")) {
    form.append("style_image", state.painting, state.painting.name || "painting.jpg");
  }
  return form;
}

// ---------------------------------------------------------------------------------- photo
function setPhoto(file) {
  if (!file) return;
  state.photo = file;
  $("original").src = URL.createObjectURL(file);
  restylize();
}

async function restylize() {
  if (!state.photo || state.camera) return;
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try {
    showError("");
    $("timing").textContent = "working…";
    const res = await api("/v1/stylize", { method: "POST", body: formFor(state.photo, $("size").value) });
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    $("result").src = url;
    $("download").href = url;
    $("download").hidden = false;
    const ms = res.headers.get("X-Stylenet-Compute-Ms");
    const total = res.headers.get("X-Stylenet-Total-Ms");
    $("timing").textContent = `${res.headers.get("X-Stylenet-Size")} · ${ms} ms on the server (${total} ms with decoding)`;
  } catch (e) {
    $("timing").textContent = "";
    showError(e.message);
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; restylize(); }
  }
}

// ---------------------------------------------------------------------------------- camera
async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    state.camera = { stream, frames: 0, times: [] };
    $("video").srcObject = stream;
    $("photo-mode").hidden = true;
    $("camera-mode").hidden = false;
    $("mode-camera").classList.add("active");
    $("mode-photo").classList.remove("active");
    await $("video").play();
    cameraLoop();
  } catch (e) {
    showError(`camera unavailable: ${e.message}`);
  }
}

function stopCamera() {
  if (!state.camera) return;
  for (const t of state.camera.stream.getTracks()) t.stop();
  state.camera = null;
  $("camera-mode").hidden = true;
  $("photo-mode").hidden = false;
  $("mode-photo").classList.add("active");
  $("mode-camera").classList.remove("active");
}

async function cameraLoop() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  while (state.camera) {
    const cam = state.camera;
    const side = Math.min(Number($("size").value), 512); // small frames keep a CPU server live
    const scale = side / Math.max(video.videoWidth || 640, video.videoHeight || 480);
    canvas.width = Math.round((video.videoWidth || 640) * scale);
    canvas.height = Math.round((video.videoHeight || 480) * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.85));
    try {
      const res = await api("/v1/stylize", { method: "POST", body: formFor(blob, side) });
      const url = URL.createObjectURL(await res.blob());
      const img = $("camera-result");
      const old = img.src;
      img.src = url;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      cam.frames += 1;
      $("frames").textContent = String(cam.frames);
      const now = performance.now();
      cam.times.push(now);
      cam.times = cam.times.filter((t) => now - t < 3000);
      const span = (now - cam.times[0]) / 1000;
      $("fps").textContent = `${(span > 0 ? (cam.times.length - 1) / span : 0).toFixed(1)} fps`;
    } catch (e) {
      showError(e.message);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

// ---------------------------------------------------------------------------------- wiring
function init() {
  $("file").addEventListener("change", (e) => setPhoto(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setPhoto(e.dataTransfer.files[0]);
  });
  const sliders = [["strength", "strength-out"], ["stroke", "stroke-out"], ["palette", "palette-out"]];
  for (const [id, out] of sliders) {
    $(id).addEventListener("input", () => { $(out).textContent = Number($(id).value).toFixed(2); });
    $(id).addEventListener("change", restylize);
  }
  $("size").addEventListener("change", restylize);
  // The painting's palette and the photo's colours pull opposite ways: choosing one clears the
  // other (the server refuses both at once).
  $("preserve").addEventListener("change", () => {
    if ($("preserve").checked) { $("palette").value = 0; $("palette-out").textContent = "0.00"; }
    restylize();
  });
  $("palette").addEventListener("input", () => {
    if (Number($("palette").value) > 0) $("preserve").checked = false;
  });
  $("mode-camera").addEventListener("click", startCamera);
  $("mode-photo").addEventListener("click", stopCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  loadStyles().catch((e) => showError(`cannot reach the server: ${e.message}`));
}

init();
