// toolkit-web.mjs: run a toolkit-exported model in the browser with onnxruntime-web.
//
//   import { loadModel } from "./toolkit-web.mjs";
//   const model = await loadModel();                 // the bundle folder this module sits in
//   const [result] = await model.predict([file]);    // a File/Blob/ImageBitmap/<img>/<canvas>, a feature row
//                                                    // (array or {feature: value}), a text, a series, a label
//   result.label, result.probabilities, result.forecast, result.score, ...   (as `toolkit predict` answers)
//
// The pre- and post-processing is the model's `toolkit` metadata applied as toolkit/runtime/edge/runner.py
// applies it in Python (same arithmetic: float32 standardizing, float64 softmax, Pillow's bilinear resize and
// grayscale weights), so a page answers what `toolkit predict` answers. onnxruntime-web does not expose an
// ONNX file's custom metadata (onnxruntime issue #16547): the document comes from model.json beside the model.
// The metadata helpers below need no onnxruntime; the runtime is imported when a model is loaded.

export const BATCH = 64; // rows per session run, as the Python runner
const MISSING = new Set(["", "na", "nan", "null", "none"]);
const WORD = /[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]/gu; // Python's \w+|[^\w\s] on str
const PRECISION_BITS = 22; // Pillow's fixed-point resampling (32 - 8 - 2)

export class InputError extends Error {}

// ------------------------------------------------------------------------------------------ metadata
const pre = (meta) => meta.inputs[0].preprocessing || {};

/** What the model reads: image, tabular, series, tokens (text tokenized here), text (raw strings into the
 * graph) or noise (a generator: labels in). */
export function inputKind(meta) {
  const port = meta.inputs[0];
  const p = port.preprocessing || {};
  if (meta.task === "generate") return "noise";
  if (port.dtype === "string" || port.dtype === "object") return "text";
  if (p.type === "tokenize") return "tokens";
  if ("window" in p) return "series";
  if (p.per === "channel") return "image";
  return "tabular";
}

/** [C, H, W] of the trained images (also for an MLP trained on flattened images), else null. */
export function imageGeometry(meta) {
  const kind = inputKind(meta);
  if (kind === "image") return meta.inputs[0].shape.slice(1).map(Number);
  const img = pre(meta).image || {};
  if (kind === "tabular" && img.flattened) return [img.channels, img.height, img.width].map(Number);
  return null;
}

export function featureNames(meta) {
  const columns = tableColumns(meta);
  if (columns) return columns.map((c) => c.name);
  const width = Number(meta.inputs[0].shape[1]);
  return pre(meta).feature_names || Array.from({ length: width }, (_, i) => `x${i}`);
}

/** A table's trained columns ({name, kind: numeric | category, levels, encoding}), or null (processing.py). */
export function tableColumns(meta) {
  return pre(meta).columns || null;
}

/** A raw category value -> its level text, null when missing (processing.level_text). */
function levelText(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return null;
    if (Number.isInteger(v)) return String(v);
  }
  const t = String(v).trim();
  return MISSING.has(t.toLowerCase()) ? null : t;
}

/** Raw values in the trained column order -> the model's row (processing.encode_table): numbers and their
 * is-missing indicators and one-hot blocks, standardized; then one code per embedding column (level index,
 * L for "other", L + 1 for missing). */
function encodeRow(meta, values, what) {
  const p = pre(meta);
  const dense = [];
  const codes = [];
  p.columns.forEach((col, i) => {
    if (col.kind === "numeric") {
      const x = number(values[i], `${what} ${JSON.stringify(col.name)}`, true);
      dense.push(x);
      if (col.indicator) dense.push(Number.isNaN(x) ? 1 : 0);
      return;
    }
    const text = levelText(values[i]);
    const n = col.levels.length;
    const index = text === null ? -1 : col.levels.indexOf(text);
    const code = text === null ? n + 1 : index < 0 ? n : index;
    if (col.encoding === "embedding") codes.push(code);
    else for (let k = 0; k < n + 2; k++) dense.push(k === code ? 1 : 0);
  });
  return standardize(Float32Array.from([...dense, ...codes]), p.mean, p.std);
}

/** The input in words ("8x8 grayscale image", "4 features", ...). */
export function describe(meta) {
  const kind = inputKind(meta);
  const geom = imageGeometry(meta);
  if (geom) return `${geom[2]}x${geom[1]} ${geom[0] === 1 ? "grayscale" : "RGB"} image`;
  if (kind === "tabular") return `${featureNames(meta).length} features`;
  if (kind === "series") return `series (window of ${pre(meta).window} values)`;
  if (kind === "tokens" || kind === "text") return "text";
  return "generator";
}

// ------------------------------------------------------------------------------------------ numbers
const f32 = Math.fround;

function number(v, what, missingOk) {
  if (v === null || v === undefined || (typeof v === "string" && MISSING.has(v.trim().toLowerCase()))) {
    if (missingOk) return NaN;
    throw new InputError(`${what} is missing`);
  }
  if (typeof v === "number") return v;
  if (typeof v !== "string") throw new InputError(`${what} is ${typeof v}, not a number`);
  const t = v.trim();
  const inf = /^([+-]?)inf(inity)?$/i.exec(t); // Python's float() spellings of infinity
  const x = inf ? (inf[1] === "-" ? -Infinity : Infinity) : Number(t);
  if (Number.isNaN(x)) throw new InputError(`${what} is ${JSON.stringify(v)}, not a number`);
  return x;
}

/** (x - mean) / std per position in float32 arithmetic; a missing value (NaN) becomes 0. `channel(i)` maps a
 * value's index to its mean/std index (per feature: i; per channel: i / (H * W)). */
function standardize(x, mean, std, channel = (i) => i) {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = channel(i);
    const v = f32(f32(f32(x[i]) - f32(mean[c])) / f32(std[c]));
    out[i] = Number.isNaN(v) ? 0 : v;
  }
  return out;
}

// ------------------------------------------------------------------------------------------ images
/** RGBA pixels of an image source, as decoded (no colour management, no alpha premultiplication). */
async function rgba(source) {
  if (typeof ImageData !== "undefined" && source instanceof ImageData) return source;
  let bitmap;
  try {
    bitmap = await createImageBitmap(source, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (exc) {
    throw new InputError(`cannot decode the image: not a PNG or JPEG file (${exc.message || exc})`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

/** RGBA -> `channels` planes (1: Pillow's "L" weights, ITU-R 601-2 in 16-bit fixed point; 3: RGB), interleaved. */
function toMode(img, channels) {
  const n = img.width * img.height;
  const d = img.data;
  const out = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const r = d[4 * i], g = d[4 * i + 1], b = d[4 * i + 2];
    if (channels === 1) out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    else out.set([r, g, b], 3 * i);
  }
  return out;
}

/** Pillow's resampling coefficients (Resample.c precompute_coeffs + normalize_coeffs_8bpc), bilinear. */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale; // the bilinear (triangle) filter has support 1
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w = new Float64Array(xmax);
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) / filterscale);
      w[x] = t < 1 ? 1 - t : 0;
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

/** One 8-bit pass along x (horizontal) or y, Pillow's integer arithmetic and clipping. */
function pass(src, w, h, bands, outSize, horizontal) {
  const { bounds, kk, ksize } = coefficients(horizontal ? w : h, outSize);
  const ow = horizontal ? outSize : w, oh = horizontal ? h : outSize;
  const out = new Uint8Array(ow * oh * bands);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const min = bounds[2 * o], len = bounds[2 * o + 1];
      for (let b = 0; b < bands; b++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let k = 0; k < len; k++) {
          const at = horizontal ? (y * w + min + k) : ((min + k) * w + x);
          ss += src[at * bands + b] * kk[o * ksize + k];
        }
        out[(y * ow + x) * bands + b] = Math.min(Math.max(ss >> PRECISION_BITS, 0), 255);
      }
    }
  return out;
}

/** Pillow's Image.resize(..., BILINEAR) on 8-bit interleaved pixels. */
export function resizeBilinear(pixels, w, h, bands, ow, oh) {
  let out = pixels;
  if (ow !== w) out = pass(out, w, h, bands, ow, true);
  if (oh !== h) out = pass(out, ow, h, bands, oh, false);
  return out;
}

/** An image source -> (C, H, W) float32 pixels in [0, 1]: converted to the trained channels, resized
 * (bilinear) to the trained size, as toolkit's image reader does. */
export async function decodeImage(source, meta) {
  const [c, h, w] = imageGeometry(meta);
  const img = await rgba(source);
  const pixels = resizeBilinear(toMode(img, c), img.width, img.height, c, w, h);
  const out = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++)
    for (let i = 0; i < h * w; i++) out[k * h * w + i] = f32(pixels[i * c + k] / 255);
  return out;
}

/** A numeric array of pixels in the training data's units (scaled by image.pixel_scale; 8-bit arrays /255). */
function pixelArray(meta, values, what) {
  const [c, h, w] = imageGeometry(meta);
  const flat = ArrayBuffer.isView(values) ? values : values.flat(Infinity);
  if (flat.length !== c * h * w) {
    throw new InputError(`${what} has ${flat.length} values; the model takes (${c}, ${h}, ${w}) images`);
  }
  const eight = flat instanceof Uint8Array || flat instanceof Uint8ClampedArray;
  const scale = f32((pre(meta).image || {}).pixel_scale || 1);
  const out = new Float32Array(flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = number(flat[i], `${what}, value ${i + 1}`, false);
    out[i] = eight ? f32(v / 255) : f32(f32(v) * scale);
  }
  return out;
}

function imageToRow(meta, pixels) {
  const p = pre(meta);
  if (inputKind(meta) === "image") {
    const plane = pixels.length / p.mean.length;
    return standardize(pixels, p.mean, p.std, (i) => Math.floor(i / plane));
  }
  return standardize(pixels, p.mean, p.std);
}

const isImageSource = (x) =>
  (typeof Blob !== "undefined" && x instanceof Blob) ||
  (typeof ImageBitmap !== "undefined" && x instanceof ImageBitmap) ||
  (typeof ImageData !== "undefined" && x instanceof ImageData) ||
  (typeof HTMLImageElement !== "undefined" && x instanceof HTMLImageElement) ||
  (typeof HTMLCanvasElement !== "undefined" && x instanceof HTMLCanvasElement) ||
  (typeof OffscreenCanvas !== "undefined" && x instanceof OffscreenCanvas);

// ------------------------------------------------------------------------------------------ text, series
/** toolkit's tokenizer from its JSON document: lower-casing, word/space/char splitting, unknown id 1. */
export class Tokenizer {
  constructor(doc) {
    this.level = doc.level;
    this.lowercase = doc.lowercase;
    this.maxLength = Number(doc.max_length);
    this.unk = Number(doc.unk_id ?? 1);
    this.index = new Map(doc.vocab.map((t, i) => [t, i]));
  }
  split(text) {
    const t = this.lowercase ? text.toLowerCase() : text;
    if (this.level === "char") return [...t].filter((c) => !/\s/u.test(c) || c === " ");
    if (this.level === "space") return t.split(" ").filter((s) => s);
    return t.match(WORD) || [];
  }
  encode(text) {
    return this.split(text).map((t) => (this.index.has(t) ? this.index.get(t) : this.unk)).slice(0, this.maxLength);
  }
}

function seriesRow(meta, values, what) {
  const p = pre(meta);
  const window = Number(p.window);
  const v = Array.from(values, (x, i) => number(x, `${what}, value ${i + 1}`, false));
  if (v.length < window) {
    throw new InputError(`${what} has ${v.length} values; the model needs the last ${window} values of the series`);
  }
  if (!v.every(Number.isFinite)) throw new InputError(`${what} has a missing or infinite value`);
  // float64 arithmetic, then float32, as toolkit.data.series windows are made
  return Float32Array.from(v.slice(-window), (x) => (x - Number(p.mean)) / Number(p.std));
}

function labelIndex(meta, label, what) {
  const labels = meta.labels || [];
  const text = String(label).trim();
  if (labels.includes(text)) return labels.indexOf(text);
  if (/^\d+$/.test(text) && Number(text) < labels.length) return Number(text);
  throw new InputError(`${what}: label ${JSON.stringify(text)} is not one of the model's: ${labels.slice(0, 20).join(", ")}`);
}

// ------------------------------------------------------------------------------------------ instances
/** One raw input -> one preprocessed row (runner.prepare_instance): an image source (File, Blob, ImageBitmap,
 * ImageData, <img>, <canvas>) or pixel array, a feature row (array, or {feature name: value}), a series
 * (array, oldest first), a text, or a label to generate. */
export async function prepare(meta, input, what = "input") {
  const kind = inputKind(meta);
  if (kind === "tokens" || kind === "text") {
    if (typeof input !== "string") throw new InputError(`${what} is ${typeof input}; a text model takes a string`);
    if (!input.trim()) throw new InputError(`${what} is an empty text`);
    return kind === "text" ? input : new Tokenizer(pre(meta).tokenizer).encode(input);
  }
  if (kind === "noise") return labelIndex(meta, input && typeof input === "object" ? input.label : input, what);
  const geom = imageGeometry(meta);
  if (isImageSource(input)) {
    if (!geom) throw new InputError(`${what} is an image; this model takes ${describe(meta)}`);
    return imageToRow(meta, await decodeImage(input, meta));
  }
  if (typeof input === "string") throw new InputError(`${what} is a string; this model takes ${describe(meta)}`);
  if (kind === "series") return seriesRow(meta, input, what);
  const nested = Array.isArray(input) && Array.isArray(input[0]);
  if (kind === "image" || (geom && nested)) {
    return imageToRow(meta, pixelArray(meta, input, what));
  }
  const names = featureNames(meta);
  let values = input;
  if (input && typeof input === "object" && !Array.isArray(input) && !ArrayBuffer.isView(input)) {
    const absent = names.filter((n) => !(n in input));
    if (absent.length) throw new InputError(`${what} has no ${JSON.stringify(absent[0])}; the model takes ${names.join(", ")}`);
    const ignored = new Set(pre(meta).ignored || []);
    const extra = Object.keys(input).filter((k) => !names.includes(k) && !ignored.has(k));
    if (tableColumns(meta) && extra.length) throw new InputError(`${what} has unknown keys ${extra.map((k) => JSON.stringify(k)).join(", ")}; the model takes ${names.join(", ")}`);
    values = names.map((n) => input[n]);
  }
  if (!values || values.length !== names.length) {
    throw new InputError(`${what} has ${values ? values.length : 0} values; the model takes ${names.length} (${names.slice(0, 8).join(", ")})`);
  }
  if (tableColumns(meta)) return encodeRow(meta, Array.from(values), what);
  const row = Float32Array.from(values, (v, i) => number(v, `${what}, value ${i + 1}`, true));
  const p = pre(meta);
  return standardize(row, p.mean, p.std);
}

/** A seeded standard normal stream (mulberry32 + Box-Muller) for a generator's noise. */
function normals(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** Preprocessed rows -> {input name: {type, data, dims}} (runner.batch_feeds): stacked, token ids right-padded
 * with 0 to the longest text, generator labels with noise drawn from `seed`. */
export function batchFeeds(meta, rows, seed = 0) {
  const kind = inputKind(meta);
  const ports = meta.inputs;
  const n = rows.length;
  if (kind === "tokens") {
    const width = Math.max(1, ...rows.map((r) => r.length));
    const ids = new BigInt64Array(n * width);
    rows.forEach((r, i) => r.forEach((id, j) => (ids[i * width + j] = BigInt(id))));
    return { [ports[0].name]: { type: "int64", data: ids, dims: [n, width] } };
  }
  if (kind === "text") return { [ports[0].name]: { type: "string", data: rows, dims: [n] } };
  if (kind === "noise") {
    const z = ports.find((p) => p.dtype.startsWith("float"));
    const label = ports.find((p) => p.dtype.startsWith("int"));
    const latent = Number(z.shape[1]);
    const next = normals(seed);
    return {
      [z.name]: { type: "float32", data: Float32Array.from({ length: n * latent }, next), dims: [n, latent] },
      [label.name]: { type: "int64", data: BigInt64Array.from(rows, BigInt), dims: [n] },
    };
  }
  const size = rows[0].length;
  const x = new Float32Array(n * size);
  rows.forEach((r, i) => x.set(r, i * size));
  // a row's shape: the port's, a named dimension (a series' "window") being what the rest leaves
  const known = ports[0].shape.slice(1).map((d) => (typeof d === "number" ? d : null));
  const rest = size / known.reduce((a, d) => a * (d ?? 1), 1);
  return { [ports[0].name]: { type: "float32", data: x, dims: [n, ...known.map((d) => d ?? rest)] } };
}

// ------------------------------------------------------------------------------------------ postprocessing
const rowsOf = (t) => {
  const data = Array.from(t.data, Number);
  const width = t.dims.length > 1 ? t.dims.slice(1).reduce((a, b) => a * b, 1) : 1;
  return Array.from({ length: t.dims[0] }, (_, i) => data.slice(i * width, (i + 1) * width));
};
const round6 = (x) => Number(x.toFixed(6));

function softmax(row) {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Outputs of one batch -> one result per row, by task (runner.predictions): label + probabilities (classify),
 * value (regress), forecast, score + anomaly flag (reconstruct), image (generate: {width, height, channels,
 * pixels: RGBA bytes}), code (an autoencoder's encoder). */
export function predictions(meta, outputs, topK = null, labelsIn = null) {
  if (meta.role === "encoder") return rowsOf(outputs[meta.outputs[0].name]).map((code) => ({ code }));
  switch (meta.task) {
    case "classify": {
      const probs = outputs.probabilities ? rowsOf(outputs.probabilities) : rowsOf(outputs.logits).map(softmax);
      const labels = meta.labels || probs[0].map((_, i) => String(i));
      const k = topK ? Math.min(topK, labels.length) : labels.length;
      return probs.map((p) => {
        const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a]).slice(0, k); // stable, as numpy's
        const best = p.indexOf(Math.max(...p));
        const probabilities = Object.fromEntries(order.map((i) => [labels[i], round6(p[i])]));
        return { label: labels[best], probability: round6(p[best]), probabilities };
      });
    }
    case "regress":
      return rowsOf(outputs.prediction).map((r) => ({ value: r.length === 1 ? r[0] : r }));
    case "forecast":
      return rowsOf(outputs.forecast).map((forecast) => ({ forecast }));
    case "reconstruct": {
      const threshold = meta.thresholds?.score?.value ?? null;
      return Array.from(outputs.score.data, Number).map((score) => ({
        score,
        anomaly: threshold === null ? null : score > threshold,
        threshold,
      }));
    }
    case "generate": {
      const t = outputs[meta.outputs[0].name];
      const [, c, h, w] = t.dims;
      return rowsOf(t).map((img, i) => ({
        label: labelsIn ? (meta.labels || [])[labelsIn[i]] ?? null : null,
        image: { width: w, height: h, channels: c, pixels: rgbaBytes(img, c, h, w) },
      }));
    }
    default:
      throw new InputError(`unknown task ${JSON.stringify(meta.task)} in the model's metadata`);
  }
}

function rgbaBytes(img, c, h, w) {
  const out = new Uint8ClampedArray(h * w * 4);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) out[4 * i + k] = Math.round(Math.min(Math.max(img[(c === 1 ? 0 : k) * h * w + i], 0), 1) * 255);
    out[4 * i + 3] = 255;
  }
  return out;
}

// ------------------------------------------------------------------------------------------ the model
/** Whether this browser offers a WebGPU adapter. */
export async function hasWebGPU() {
  try {
    return Boolean(navigator.gpu && (await navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

const runtimes = new Map();

/** onnxruntime-web from the bundle's ort/ folder: the WebAssembly build, or the WebGPU one (which also runs
 * the nodes WebGPU cannot on WebAssembly). */
function runtime(base, backend, threads) {
  const file = backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs";
  const url = new URL(`ort/${file}`, base).href;
  if (!runtimes.has(url)) {
    runtimes.set(url, import(url).then((ort) => {
      ort.env.wasm.wasmPaths = new URL("ort/", base).href;
      ort.env.wasm.numThreads = threads; // more than 1 needs a cross-origin isolated page (COOP + COEP)
      ort.env.logLevel = "error";
      return ort;
    }));
  }
  return runtimes.get(url);
}

async function fetchOk(url, as) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`cannot fetch ${url}: HTTP ${r.status}`);
  return as === "json" ? r.json() : new Uint8Array(await r.arrayBuffer());
}

/** A loaded model: `predict(inputs)`, `prepare(inputs)`, `run(feeds)`; `meta`, `backend`, `timings`. */
export class Model {
  constructor(ort, session, meta, backend, timings) {
    Object.assign(this, { ort, session, meta, backend, timings });
    this.kind = inputKind(meta);
  }

  /** Raw inputs -> preprocessed rows (errors name the input: "input 2: ..."). */
  async prepare(inputs) {
    return Promise.all(inputs.map((x, i) => prepare(this.meta, x, `input ${i}`)));
  }

  /** {name: {type, data, dims}} -> {output name: {data, dims}} through the onnxruntime-web session. */
  async run(feeds) {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, f]) => [k, new this.ort.Tensor(f.type, f.data, f.dims)]),
    );
    const out = await this.session.run(tensors);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { data: t.data, dims: t.dims }]));
  }

  /** Raw inputs -> one result per input, as `toolkit predict` (and the server's V1 :predict) answers. With
   * `outputs: true` also the raw output rows, for checks against onnxruntime elsewhere. */
  async predict(inputs, { topK = null, seed = 0, outputs = false } = {}) {
    const rows = await this.prepare(inputs);
    const results = [];
    for (let start = 0; start < rows.length; start += BATCH) {
      const chunk = rows.slice(start, start + BATCH);
      const out = await this.run(batchFeeds(this.meta, chunk, seed + start));
      const labels = this.kind === "noise" ? chunk : null;
      const preds = predictions(this.meta, out, topK, labels);
      if (outputs) {
        const raw = Object.fromEntries(Object.entries(out).map(([k, t]) => [k, rowsOf(t)]));
        preds.forEach((p, i) => (p.outputs = Object.fromEntries(Object.entries(raw).map(([k, r]) => [k, r[i]]))));
      }
      results.push(...preds);
    }
    return results;
  }

  async release() {
    await this.session.release();
  }
}

/** Load the bundle at `base` (default: the folder of this module): its manifest.json names the model file of
 * each runtime; model.json is the metadata. `backend`: "auto" (WebGPU when the browser has an adapter and the
 * bundle the WebGPU runtime, else WebAssembly), "wasm" or "webgpu". `timings` (ms): the fetches and runtime
 * import, then the session. */
export async function loadModel(base = new URL(".", import.meta.url), { backend = "auto", threads = 1 } = {}) {
  const t0 = performance.now();
  base = new URL(base, location.href);
  if (!base.href.endsWith("/")) base = new URL(base.href + "/");
  const [manifest, meta, gpu] = await Promise.all([
    fetchOk(new URL("manifest.json", base), "json"),
    fetchOk(new URL("model.json", base), "json"),
    backend === "auto" ? hasWebGPU() : false,
  ]);
  const web = manifest.web || {};
  const models = web.models || { wasm: "model.onnx" };
  const chosen = backend === "auto" ? (gpu && models.webgpu ? "webgpu" : "wasm") : backend;
  if (!models[chosen]) throw new Error(`this bundle has no model for ${chosen} (packed with --no-webgpu or --format ort)`);
  const [bytes, ort] = await Promise.all([fetchOk(new URL(models[chosen], base)), runtime(base, chosen, threads)]);
  const t1 = performance.now();
  const providers = chosen === "webgpu" ? ["webgpu", "wasm"] : ["wasm"];
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: providers, graphOptimizationLevel: "all", logSeverityLevel: 3 });
  } catch (exc) {
    if (chosen !== "webgpu" || backend !== "auto") throw exc;
    console.warn(`WebGPU session failed (${exc.message || exc}); using WebAssembly`);
    return loadModel(base, { backend: "wasm", threads });
  }
  const t2 = performance.now();
  return new Model(ort, session, meta, chosen, { fetch_ms: t1 - t0, session_ms: t2 - t1 });
}
