// form.mjs: an input form built from a model's `toolkit` metadata, and the rendering of its answers.
// Shared by the server's playground (answers from POST /v1/models/NAME:predict) and the browser bundle's page
// (answers computed in the page). Text from the model or the server is set as text, never parsed as HTML.

import { describe, featureNames, imageGeometry, inputKind, tableColumns } from "./toolkit-web.mjs";

const SVG = "http://www.w3.org/2000/svg";

/** el("div", {class: "x"}, child, "text", ...) */
export function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** Numbers pasted as a row or a series: separated by commas, semicolons, spaces, tabs or new lines. */
export const splitNumbers = (text) => text.split(/[\s,;]+/).filter((s) => s !== "");

// ------------------------------------------------------------------------------------------ input widgets
function imageWidget(meta) {
  const [c, h, w] = imageGeometry(meta);
  let file = null;
  const preview = el("img", { class: "preview", alt: "", hidden: true });
  const name = el("span", { class: "filename" }, "no image yet");
  const set = (f) => {
    file = f;
    name.textContent = f ? f.name || "image" : "no image yet";
    if (f) {
      preview.src = URL.createObjectURL(f);
      preview.hidden = false;
    }
  };
  const input = el("input", { type: "file", accept: "image/png,image/jpeg", "data-testid": "file", onchange: () => set(input.files[0]) });
  const zone = el(
    "div",
    {
      class: "drop",
      "data-testid": "drop",
      ondragover: (e) => (e.preventDefault(), zone.classList.add("over")),
      ondragleave: () => zone.classList.remove("over"),
      ondrop: (e) => {
        e.preventDefault();
        zone.classList.remove("over");
        if (e.dataTransfer.files.length) set(e.dataTransfer.files[0]);
      },
    },
    el("div", {}, "Drop a PNG or JPEG here, or ", el("label", { class: "pick" }, "choose a file", input)),
    el("div", { class: "hint" }, `resized to ${w}x${h}, ${c === 1 ? "grayscale" : "RGB"}, as in training`),
    name,
    preview,
  );
  return {
    element: zone,
    read: () => {
      if (!file) throw new Error("choose an image first");
      return file;
    },
  };
}

function tableWidget(meta) {
  const names = featureNames(meta);
  const columns = tableColumns(meta) || names.map((name) => ({ name, kind: "numeric" }));
  const lists = [];
  const fields = columns.map((col, i) => {
    if (col.kind === "numeric") {
      return el("input", { type: "text", inputmode: "decimal", name: `f${i}`, "data-feature": col.name, placeholder: "missing", size: 8 });
    }
    // A category: its trained levels offered, any other text allowed (it is read as "other").
    lists.push(el("datalist", { id: `levels-${i}` }, col.levels.slice(0, 1000).map((v) => el("option", { value: v }))));
    return el("input", { type: "text", list: `levels-${i}`, name: `f${i}`, "data-feature": col.name, "data-category": true, placeholder: "missing", size: 10 });
  });
  const paste = el("input", {
    type: "text",
    class: "paste",
    "data-testid": "paste-row",
    placeholder: `paste a row of ${names.length} values`,
    oninput: () => {
      const values = splitNumbers(paste.value);
      if (values.length === names.length) values.forEach((v, i) => (fields[i].value = v));
    },
  });
  const grid = el("div", { class: "fields" }, names.map((n, i) => el("label", {}, el("span", {}, n), fields[i])));
  return {
    element: el("div", {}, paste, grid, lists),
    read: () =>
      fields.map((f) => {
        const v = f.value.trim();
        if (v === "") return null;
        return f.hasAttribute("data-category") ? v : Number(v);
      }),
  };
}

function seriesWidget(meta) {
  const window = meta.inputs[0].preprocessing.window;
  const area = el("textarea", { rows: 4, "data-testid": "series", placeholder: `at least the last ${window} values of the series, oldest first` });
  return { element: area, read: () => splitNumbers(area.value).map(Number) };
}

function textWidget() {
  const area = el("textarea", { rows: 3, "data-testid": "text", placeholder: "type a text" });
  return { element: area, read: () => area.value };
}

function labelWidget(meta) {
  const select = el("select", { "data-testid": "label-select" }, (meta.labels || []).map((l) => el("option", { value: l }, l)));
  return { element: select, read: () => select.value };
}

/** The input form of a model: {element, read()} where read() gives the raw input (a File for images, an array
 * of numbers or nulls for tables, numbers for a series, a string for texts, a label for generators). */
export function inputForm(meta, onSubmit) {
  const kind = inputKind(meta);
  let widget;
  if (imageGeometry(meta)) widget = imageWidget(meta);
  else if (kind === "tabular") widget = tableWidget(meta);
  else if (kind === "series") widget = seriesWidget(meta);
  else if (kind === "noise") widget = labelWidget(meta);
  else widget = textWidget();
  const button = el("button", { type: "submit", "data-testid": "predict" }, meta.task === "generate" ? "Generate" : "Predict");
  const form = el(
    "form",
    { class: "input-form", onsubmit: (e) => (e.preventDefault(), onSubmit(widget.read)) },
    el("div", { class: "what" }, `${meta.task} · ${meta.arch || "model"} · ${kind === "noise" ? "draws an image of a label" : `takes ${describe(meta)}`}`),
    widget.element,
    button,
  );
  return { element: form, read: widget.read, button };
}

// ------------------------------------------------------------------------------------------ answers
const fmt = (x) => (typeof x === "number" ? Number(x.toPrecision(5)).toString() : String(x));

function bars(probabilities, top = 5) {
  // most likely first (a JS object lists integer-like keys such as "3" in numeric order, not as sent)
  const entries = Object.entries(probabilities).sort((a, b) => b[1] - a[1]).slice(0, top);
  return el(
    "div",
    { class: "bars" },
    entries.map(([label, p]) =>
      el(
        "div",
        { class: "bar", "data-label": label },
        el("span", { class: "name" }, label),
        el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
        el("span", { class: "value" }, p.toFixed(3)),
      ),
    ),
  );
}

function plot(history, forecast) {
  const w = 420, h = 160, pad = 8;
  const all = [...history, ...forecast];
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(all.length - 1, 1);
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / (hi - lo || 1);
  const path = (values, from) => values.map((v, i) => `${i ? "L" : "M"}${x(from + i).toFixed(1)},${y(v).toFixed(1)}`).join("");
  const joined = history.length ? [history[history.length - 1], ...forecast] : forecast;
  return el(
    "svg:svg",
    { class: "plot", viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": "series and forecast" },
    history.length ? el("svg:path", { d: path(history, 0), class: "history" }) : null,
    el("svg:path", { d: path(joined, history.length ? history.length - 1 : 0), class: "forecast" }),
  );
}

function scoreGauge(r) {
  const t = r.threshold;
  const top = Math.max(r.score, t ?? 0) * 1.25 || 1;
  return el(
    "div",
    { class: "gauge" },
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${((100 * r.score) / top).toFixed(1)}%` }),
      t === null ? null : el("span", { class: "threshold", style: `left:${((100 * t) / top).toFixed(1)}%`, title: `threshold ${fmt(t)}` })),
  );
}

function imageOf(image) {
  if (image.b64) return el("img", { class: "generated", src: `data:image/png;base64,${image.b64}`, alt: "generated image" });
  const canvas = el("canvas", { class: "generated", width: image.width, height: image.height });
  canvas.getContext("2d").putImageData(new ImageData(image.pixels, image.width, image.height), 0, 0);
  return canvas;
}

/** One answer as a block: label with bars, value, forecast plot, anomaly score against its threshold,
 * generated image or latent code; `latencyMs` and `note` (e.g. "in the page, WebAssembly") under it. */
export function renderResult(result, { latencyMs = null, history = [], note = "" } = {}) {
  const parts = [];
  if (result.error) parts.push(el("div", { class: "error", "data-testid": "error" }, result.error));
  else if ("probabilities" in result) {
    parts.push(el("div", { class: "headline" }, el("span", { "data-testid": "label" }, result.label), el("span", { class: "p" }, ` ${(100 * result.probability).toFixed(1)}%`)));
    parts.push(bars(result.probabilities));
  } else if ("value" in result) {
    const v = Array.isArray(result.value) ? result.value.map(fmt).join(", ") : fmt(result.value);
    parts.push(el("div", { class: "headline" }, "value ", el("span", { "data-testid": "value" }, v)));
  } else if ("forecast" in result) {
    parts.push(el("div", { class: "headline" }, "forecast ", el("span", { "data-testid": "forecast" }, result.forecast.map(fmt).join(", "))));
    parts.push(plot(history.slice(-48), result.forecast));
  } else if ("score" in result) {
    const verdict = result.anomaly === null ? "no threshold" : result.anomaly ? "ANOMALY" : "normal";
    parts.push(el("div", { class: `headline ${result.anomaly ? "anomaly" : ""}` }, el("span", { "data-testid": "verdict" }, verdict),
      ` · score ${fmt(result.score)}`, result.threshold === null ? "" : ` · threshold ${fmt(result.threshold)}`));
    parts.push(scoreGauge(result));
  } else if ("image" in result) {
    parts.push(el("div", { class: "headline" }, el("span", { "data-testid": "label" }, result.label ?? "generated")), imageOf(result.image));
  } else if ("code" in result) {
    parts.push(el("div", { class: "headline" }, "code ", el("span", { "data-testid": "code" }, result.code.map(fmt).join(", "))));
  }
  const foot = [latencyMs === null ? null : `latency ${latencyMs.toFixed(1)} ms`, note].filter(Boolean).join(" · ");
  if (foot) parts.push(el("div", { class: "latency", "data-testid": "latency" }, foot));
  return el("div", { class: "result", "data-testid": "result" }, parts);
}
