// The map of the Embeddings panel: regl-scatterplot (WebGL) inside an anywidget view.
//
// Python sends the points as binary buffers (float32 x, y in [-1, 1]; float32 colour category and
// side per point) and the colour, size and opacity maps; lasso and click selections come back as a
// binary int32 buffer of point indices. Built with esbuild into medsynth_explore/widgets/scatter.js
// (see package.json); nothing is fetched at run time.
import createScatterplot from "regl-scatterplot";

function floats(view) {
  if (!view || !view.byteLength) return new Float32Array(0);
  return new Float32Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function ints(view) {
  if (!view || !view.byteLength) return [];
  return Array.from(new Int32Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)));
}

function button(label, title, onClick) {
  const b = document.createElement("button");
  b.className = "msx-scatter-button";
  b.textContent = label;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "msx-scatter";
  const bar = document.createElement("div");
  bar.className = "msx-scatter-bar";
  const frame = document.createElement("div");
  frame.className = "msx-scatter-frame";
  frame.style.height = `${model.get("height")}px`;
  const canvas = document.createElement("canvas");
  frame.appendChild(canvas);
  const status = document.createElement("span");
  status.className = "msx-scatter-status";
  root.append(bar, frame);
  el.appendChild(root);

  const plot = createScatterplot({
    canvas,
    width: "auto",
    height: "auto",
    pointSize: model.get("sizes"),
    opacity: model.get("opacities"),
    sizeBy: "valueB",
    opacityBy: "valueB",
    colorBy: "valueA",
    pointColor: model.get("palette"),
    mouseMode: model.get("mode"),
    lassoMinDelay: 0,
    lassoMinDist: 2,
    lassoColor: [0.1, 0.1, 0.1, 0.9],
    pointOutlineWidth: 1,
    backgroundColor: [1, 1, 1, 1],
    showReticle: false,
  });

  const lasso = button("Lasso", "drag to draw a lasso around points", () => setMode("lasso"));
  const pan = button("Pan / zoom", "drag to pan, scroll to zoom", () => setMode("panZoom"));
  const reset = button("Reset view", "show every point", () => plot.reset());
  const clear = button("Clear selection", "deselect every point", () => plot.deselect());
  bar.append(lasso, pan, reset, clear, status);

  function setMode(mode) {
    model.set("mode", mode);
    model.save_changes();
  }
  function showMode() {
    const mode = model.get("mode");
    plot.set({ mouseMode: mode });
    lasso.classList.toggle("msx-active", mode === "lasso");
    pan.classList.toggle("msx-active", mode === "panZoom");
  }

  let drawn = 0;
  async function draw() {
    const xy = floats(model.get("points"));
    const n = xy.length / 2;
    const x = new Float32Array(n);
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      x[i] = xy[2 * i];
      y[i] = xy[2 * i + 1];
    }
    const category = floats(model.get("category"));
    const side = floats(model.get("side"));
    plot.set({ pointColor: model.get("palette"), pointSize: model.get("sizes"), opacity: model.get("opacities") });
    await plot.draw(
      { x, y, valueA: category.length === n ? category : new Float32Array(n), valueB: side.length === n ? side : new Float32Array(n) },
      { zDataType: "categorical", wDataType: "categorical" },
    );
    drawn += 1;
    status.textContent = `${n.toLocaleString()} points`;
    root.dataset.points = String(n);
    root.dataset.drawn = String(drawn);
    showSelection();
  }

  let fromPython = false;
  function showSelection() {
    const sel = ints(model.get("selection"));
    fromPython = true;
    if (sel.length) plot.select(sel, { preventEvent: true });
    else plot.deselect({ preventEvent: true });
    fromPython = false;
  }

  function send(points) {
    if (fromPython) return;
    const buf = Int32Array.from(points || []);
    model.set("selection", new DataView(buf.buffer));
    model.set("selection_id", model.get("selection_id") + 1);
    model.save_changes();
  }
  plot.subscribe("select", ({ points }) => send(points));
  plot.subscribe("deselect", () => send([]));

  const redraw = () => draw();
  model.on("change:points", redraw);
  model.on("change:category", redraw);
  model.on("change:palette", redraw);
  model.on("change:mode", showMode);
  model.on("change:selection", showSelection);
  showMode();
  draw();

  return () => {
    model.off("change:points", redraw);
    model.off("change:category", redraw);
    model.off("change:palette", redraw);
    model.off("change:mode", showMode);
    model.off("change:selection", showSelection);
    plot.destroy();
  };
}

export default { render };
