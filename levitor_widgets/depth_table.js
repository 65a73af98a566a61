// The Studio's path table (an anywidget): one row per path point with its frame, its "x nearer" (a number and a
// slider on a log2 scale), a note and a delete button.
//
// State flows one way: the kernel sets `rows` (JSON) and `subject`; the browser never writes them back. What the
// user does is sent as a custom message naming the subject the table showed ({type, subject, point, value}), so a
// value shown by the table is never mistaken for an edit: setting an input's value from script fires no input
// event, and a message from a table that showed another object (sent before the new rows arrived) is dropped by
// the kernel.

function cell(tag, css, text) {
  const e = document.createElement(tag);
  if (css) e.style.cssText = css;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el }) {
  el.classList.add("levitor-depth-table");
  const table = cell("table", "border-collapse: collapse; font: 12px sans-serif; width: 100%; table-layout: fixed");
  const head = cell("tr", "color: #555; text-align: left");
  const widths = ["34px", "58px", "64px", "", "132px", "30px"];
  ["", "frame", "x nearer", "than P1", "", ""].forEach((t, i) => {
    const th = cell("th", "font-weight: normal; padding: 0 4px; white-space: nowrap; overflow: hidden", t);
    if (widths[i]) th.style.width = widths[i];
    head.append(th);
  });
  table.append(head);
  el.append(table);
  let rows = [];  // the <tr> elements with their inputs, reused

  const send = (type, point, value, via) => model.send({ type, subject: model.get("subject"), point, value,
                                                        via: via || "" });

  function makeRow(j) {
    const tr = cell("tr", "height: 26px");
    const name = cell("td", "padding: 0 4px; font-weight: bold; white-space: nowrap");
    const frameTd = cell("td", "padding: 0 4px");
    const frame = cell("input", "width: 50px; box-sizing: border-box");
    frame.type = "number"; frame.min = "1"; frame.step = "1";
    frame.className = "levitor-frame";
    frameTd.append(frame);
    const numTd = cell("td", "padding: 0 4px");
    const num = cell("input", "width: 58px; box-sizing: border-box");
    num.type = "number"; num.step = "0.01"; num.min = "0";
    num.className = "levitor-nearness";
    numTd.append(num);
    const sliderTd = cell("td", "padding: 0 4px");
    const slider = cell("input", "width: 100%; min-width: 160px; box-sizing: border-box; margin: 0");
    slider.type = "range";
    slider.className = "levitor-nearness-slider";
    sliderTd.append(slider);
    const note = cell("td", "padding: 0 4px; color: #a15c00; white-space: nowrap; overflow: hidden; " +
                            "text-overflow: ellipsis");
    note.className = "levitor-note";
    const delTd = cell("td", "padding: 0 2px");
    const del = cell("button", "width: 24px; padding: 0", "x");
    del.title = "delete this path point (key Delete)";
    delTd.append(del);
    tr.append(name, frameTd, numTd, sliderTd, note, delTd);
    table.append(tr);
    const r = { tr, name, frame, num, slider, note, del, dragging: false };
    // what the user does, and only that, goes to the kernel
    slider.addEventListener("pointerdown", () => { r.dragging = true; });
    const release = () => { r.dragging = false; };
    slider.addEventListener("pointerup", release);
    slider.addEventListener("pointercancel", release);
    slider.addEventListener("change", release);
    slider.addEventListener("input", () => {
      const v = Math.pow(2, parseFloat(slider.value));
      num.value = v.toFixed(2);
      send("nearness", j, v, "slider");
    });
    num.addEventListener("change", () => {
      const v = parseFloat(num.value);
      if (v > 0 && isFinite(v)) send("nearness", j, v, "number");
    });
    frame.addEventListener("change", () => {
      const f = parseInt(frame.value, 10);
      if (isFinite(f)) send("frame", j, f);
    });
    del.addEventListener("click", () => send("delete", j, 0));
    return r;
  }

  function draw() {
    const data = JSON.parse(model.get("rows") || "[]");
    while (rows.length < data.length) rows.push(makeRow(rows.length));
    rows.forEach((r, j) => {
      const d = data[j];
      r.tr.style.display = d ? "" : "none";
      if (!d) return;
      r.tr.style.outline = d.active ? "1px solid orange" : "";
      r.name.textContent = d.name;
      r.frame.max = String(d.frames);
      r.frame.disabled = !d.timed;
      if (document.activeElement !== r.frame) r.frame.value = String(d.frame);
      r.slider.min = String(d.lo2); r.slider.max = String(d.hi2); r.slider.step = String(d.step);
      r.slider.disabled = r.num.disabled = !d.editable;
      if (!r.dragging) r.slider.value = String(Math.log2(d.shown));
      if (document.activeElement !== r.num) r.num.value = d.shown.toFixed(2);
      r.slider.title = "from " + Math.pow(2, d.lo2).toFixed(2) + "x to " + Math.pow(2, d.hi2).toFixed(2) +
                       "x: what the 0..255 disparity scale reaches from P1's depth";
      r.note.textContent = d.note || "";
      r.note.title = d.detail || d.note || "";
      r.del.disabled = !d.deletable;
    });
  }

  model.on("change:rows", draw);
  draw();
}

export default { render };
