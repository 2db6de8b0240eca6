// Mask painting canvas for medsynth-explore. The mask lives in Python as bytes
// (one uint8 per image pixel, 1 = regenerate); this view draws the image at its
// own resolution (the canvas holds one pixel per image pixel), the mask as a
// translucent overlay, scales both on screen by `display_size` x `zoom`
// (scrolling when zoomed in), and sends each finished stroke back.
function render({ model, el }) {
  const wrap = document.createElement("div");
  wrap.className = "msx-canvas";
  wrap.style.overflow = "auto";
  wrap.style.display = "inline-block";
  wrap.style.border = "1px solid #bbb";
  const canvas = document.createElement("canvas");
  canvas.style.cursor = "crosshair";
  canvas.style.touchAction = "none";
  canvas.style.imageRendering = "pixelated";
  canvas.style.display = "block";
  wrap.appendChild(canvas);
  const info = document.createElement("div");
  info.className = "msx-caption msx-canvas-info";
  el.appendChild(wrap);
  el.appendChild(info);
  const ctx = canvas.getContext("2d");
  const overlay = document.createElement("canvas"); // the mask, one pixel per image pixel
  const octx = overlay.getContext("2d");
  let img = null;
  let mask = null; // Uint8Array(h * w), local copy while painting
  let shade = null; // ImageData of the overlay
  let drawing = false;

  function dims() {
    return [model.get("height"), model.get("width")];
  }
  function layout() {
    const [h, w] = dims();
    const size = model.get("display_size");
    const zoom = model.get("zoom") || 1;
    const cssW = Math.max(1, Math.round(size * zoom));
    const cssH = Math.max(1, Math.round(size * zoom * h / w));
    canvas.style.width = cssW + "px";
    canvas.style.height = cssH + "px";
    wrap.style.maxWidth = size + 2 + "px";
    wrap.style.maxHeight = Math.round(size * h / w) + 2 + "px";
    info.textContent = `${w}×${h} px · zoom ${zoom.toFixed(2)} · brush ${model.get("brush")} px`;
  }
  function loadMask() {
    const [h, w] = dims();
    const dv = model.get("mask");
    mask = new Uint8Array(h * w);
    if (dv && dv.byteLength === h * w) {
      mask.set(new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength));
    }
    overlay.width = w;
    overlay.height = h;
    shade = octx.createImageData(w, h);
    for (let i = 0; i < mask.length; i++) {
      if (mask[i]) shadePixel(i, 1);
    }
  }
  function shadePixel(i, on) {
    const d = shade.data;
    d[4 * i] = 255;
    d[4 * i + 1] = 60;
    d[4 * i + 2] = 60;
    d[4 * i + 3] = on ? 115 : 0;
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
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    layout();
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, w, h);
    if (img) ctx.drawImage(img, 0, 0, w, h);
    if (!shade) return;
    octx.putImageData(shade, 0, 0);
    ctx.drawImage(overlay, 0, 0);
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
        if (dx * dx + dy * dy <= r * r) {
          const i = y * w + x;
          mask[i] = value;
          shadePixel(i, value);
        }
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
  model.on("change:zoom", redraw);
  model.on("change:brush", layout);
  loadMask();
  loadImage();
  return () => {};
}
export default { render };
