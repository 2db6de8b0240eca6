// Mask painting canvas for medsynth-explore. The mask lives in Python as bytes
// (one uint8 per image pixel, 1 = regenerate); this view draws the image, the
// mask as a translucent overlay, and sends each finished stroke back.
function render({ model, el }) {
  const wrap = document.createElement("div");
  wrap.className = "msx-canvas";
  const canvas = document.createElement("canvas");
  canvas.style.cursor = "crosshair";
  canvas.style.touchAction = "none";
  canvas.style.imageRendering = "pixelated";
  canvas.style.border = "1px solid #bbb";
  wrap.appendChild(canvas);
  el.appendChild(wrap);
  const ctx = canvas.getContext("2d");
  let img = null;
  let mask = null; // Uint8Array(h * w), local copy while painting
  let drawing = false;

  function dims() {
    return [model.get("height"), model.get("width")];
  }
  function loadMask() {
    const [h, w] = dims();
    const dv = model.get("mask");
    mask = new Uint8Array(h * w);
    if (dv && dv.byteLength === h * w) {
      mask.set(new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength));
    }
  }
  function loadImage() {
    const dv = model.get("image");
    if (!dv || dv.byteLength === 0) { img = null; redraw(); return; }
    const blob = new Blob([new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength)], { type: "image/png" });
    const url = URL.createObjectURL(blob);
    const im = new Image();
    im.onload = () => { img = im; redraw(); URL.revokeObjectURL(url); };
    im.src = url;
  }
  function redraw() {
    const [h, w] = dims();
    const size = model.get("display_size");
    canvas.width = size;
    canvas.height = Math.round(size * h / w);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (img) ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    if (!mask) return;
    const sx = canvas.width / w, sy = canvas.height / h;
    ctx.fillStyle = "rgba(255, 60, 60, 0.45)";
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (mask[y * w + x]) ctx.fillRect(x * sx, y * sy, Math.ceil(sx), Math.ceil(sy));
      }
    }
  }
  function paintAt(ev) {
    const [h, w] = dims();
    const rect = canvas.getBoundingClientRect();
    const px = (ev.clientX - rect.left) / rect.width * w;
    const py = (ev.clientY - rect.top) / rect.height * h;
    const r = model.get("brush");
    const value = model.get("mode") === "erase" ? 0 : 1;
    for (let y = Math.max(0, Math.floor(py - r)); y <= Math.min(h - 1, Math.ceil(py + r)); y++) {
      for (let x = Math.max(0, Math.floor(px - r)); x <= Math.min(w - 1, Math.ceil(px + r)); x++) {
        const dx = x + 0.5 - px, dy = y + 0.5 - py;
        if (dx * dx + dy * dy <= r * r) mask[y * w + x] = value;
      }
    }
    redraw();
  }
  function finish() {
    if (!drawing) return;
    drawing = false;
    model.set("mask", new DataView(mask.slice().buffer));
    model.set("strokes", model.get("strokes") + 1);
    model.save_changes();
  }
  canvas.addEventListener("pointerdown", (ev) => {
    drawing = true;
    canvas.setPointerCapture(ev.pointerId);
    loadMask();
    paintAt(ev);
  });
  canvas.addEventListener("pointermove", (ev) => { if (drawing) paintAt(ev); });
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  model.on("change:mask", () => { loadMask(); redraw(); });
  model.on("change:image", loadImage);
  model.on("change:display_size", redraw);
  loadMask();
  loadImage();
  return () => {};
}
export default { render };
