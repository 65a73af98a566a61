// The Studio's 3D view (an anywidget): draws the whole figure from the model's state on every render and every
// change, so a re-run cell, a reload or a second view of the same widget always shows what the kernel holds.
// Plotly.js comes from the page if it has one, else from the kernel once per page (the plotly Python package's
// own plotly.min.js, sent as one binary message): nothing is fetched from the network.

const REQUEST = "levitor-plotly?";
const REPLY = "levitor-plotly";
const TIMEOUT_MS = 30000;

function bytes(v) {
  if (!v) return new Uint8Array(0);
  if (v instanceof DataView) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return new Uint8Array(0);
}

function floats(v) {
  const b = bytes(v);
  const copy = new Uint8Array(b.length);  // aligned copy: a DataView's offset need not be a multiple of 4
  copy.set(b);
  return new Float32Array(copy.buffer, 0, Math.floor(b.length / 4));
}

function loadPlotly(model) {
  if (window.Plotly && window.Plotly.react) return Promise.resolve(window.Plotly);
  if (window.__levitorPlotly) return window.__levitorPlotly;
  const p = new Promise((resolve, reject) => {
    const timer = setTimeout(() => { model.off("msg:custom", onMsg); reject(new Error("no reply from the kernel")); },
                             TIMEOUT_MS);
    function onMsg(msg, buffers) {
      if (!msg || msg.type !== REPLY) return;
      model.off("msg:custom", onMsg);
      clearTimeout(timer);
      try {
        const code = new TextDecoder().decode(bytes(buffers && buffers[0]));
        const module = { exports: {} };
        // the UMD bundle sees a CommonJS module (never AMD: some pages have require.js)
        new Function("module", "exports", "define", code).call(window, module, module.exports, undefined);
        resolve(module.exports && module.exports.react ? module.exports : window.Plotly);
      } catch (e) { reject(e); }
    }
    model.on("msg:custom", onMsg);
    model.send({ type: REQUEST });
  });
  window.__levitorPlotly = p;
  p.catch(() => { if (window.__levitorPlotly === p) window.__levitorPlotly = null; });  // the next render retries
  return p;
}

function cloudTrace(model) {
  const xyz = floats(model.get("cloud_xyz"));
  const rgb = bytes(model.get("cloud_rgb"));
  const n = Math.min(Math.floor(xyz.length / 3), Math.floor(rgb.length / 3));
  const x = new Float32Array(n), y = new Float32Array(n), z = new Float32Array(n), color = new Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = xyz[3 * i]; y[i] = xyz[3 * i + 1]; z[i] = xyz[3 * i + 2];
    color[i] = "rgb(" + rgb[3 * i] + "," + rgb[3 * i + 1] + "," + rgb[3 * i + 2] + ")";
  }
  return { type: "scatter3d", mode: "markers", x, y, z, name: "photo", hoverinfo: "skip", showlegend: false,
           marker: { size: model.get("point_size"), color, opacity: 1 } };
}

function render({ model, el }) {
  el.classList.add("levitor-view3d");
  const hint = document.createElement("div");
  hint.className = "levitor-view3d-hint";
  hint.style.cssText = "font: 12px sans-serif; color: #555; min-height: 16px; margin: 2px 0";
  const plot = document.createElement("div");
  plot.style.cssText = `width: ${model.get("width")}px; height: ${model.get("height")}px`;
  el.append(hint, plot);
  let plotly = null, queued = false, drawn = 0, alive = true;

  const draw = () => {
    queued = false;
    if (!alive || !plotly) return;
    const traces = [cloudTrace(model), ...JSON.parse(model.get("traces") || "[]")];
    const layout = JSON.parse(model.get("figure_layout") || "{}");
    hint.textContent = model.get("hint") || "";
    Promise.resolve(plotly.react(plot, traces, layout, { displaylogo: false, responsive: false })).then(() => {
      drawn += 1;
      el.dataset.points = String(traces[0].x.length);
      el.dataset.traces = String(plot.data ? plot.data.length : 0);
      el.dataset.drawn = String(drawn);
    }, (e) => { hint.textContent = "the 3D view could not draw: " + e; });
  };
  const schedule = () => { if (!queued) { queued = true; requestAnimationFrame(draw); } };

  hint.textContent = "loading the 3D view ...";
  loadPlotly(model).then((P) => { plotly = P; schedule(); },
                         (e) => { hint.textContent = "the 3D view could not load Plotly.js: " + e; });
  for (const name of ["cloud_xyz", "cloud_rgb", "traces", "figure_layout", "hint", "point_size"]) {
    model.on("change:" + name, schedule);
  }
  return () => { alive = false; if (plotly) plotly.purge(plot); };
}

export default { render };
