#!/usr/bin/env node
// Embed a toolkit model in a Node.js program: onnxruntime-node plus the model.json sidecar, nothing else.
//
//   npm install --ignore-scripts          # onnxruntime-node ships its CPU binaries; scripts only fetch CUDA
//   node predict.js MODEL.onnx rows.csv            # tabular: one CSV row (header optional) per prediction
//   node predict.js MODEL.onnx --text "some text"  # text models (tokenized here from the sidecar's vocabulary)
//   node predict.js MODEL.onnx digit.png           # images: 8-bit PNG at the model's size (no resizing here)
//   add --json for machine-readable output
//
// onnxruntime-node does not expose an ONNX file's custom metadata (onnxruntime issue #16547), so the
// preprocessing comes from model.json, the sidecar `toolkit export` writes next to model.onnx: the same
// document that is embedded in the model under the metadata key `toolkit`.
"use strict";

const fs = require("fs");
const path = require("path");
const zlib = require("zlib");
const ort = require("onnxruntime-node");

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function sidecar(modelPath) {
  const file = modelPath.replace(/\.onnx$/, ".json");
  if (!fs.existsSync(file)) fail(`${file} not found: export the model with toolkit export (it writes the sidecar)`);
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

// ------------------------------------------------------------------------------------------ preprocessing
function standardize(values, mean, std) {
  // (x - mean) / std in float32 arithmetic; a missing value (NaN) becomes 0, as in training
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Math.fround(Math.fround(values[i]) - Math.fround(mean[i])) / Math.fround(std[i]);
    out[i] = Number.isNaN(v) ? 0 : Math.fround(v);
  }
  return out;
}

function csvRows(file, pre, width) {
  const lines = fs.readFileSync(file, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  let rows = lines.map((l) => l.split(","));
  let columns = [...Array(width).keys()];
  let fields = width;
  const isHeader = rows[0].some((c) => c.trim() !== "" && Number.isNaN(Number(c)) && !/^(na|nan)$/i.test(c.trim()));
  if (isHeader) {
    const header = rows[0].map((h) => h.trim());
    const names = pre.feature_names || [];
    if (names.every((n) => header.includes(n))) columns = names.map((n) => header.indexOf(n));
    fields = header.length;
    rows = rows.slice(1);
  }
  return rows.map((r, i) => {
    const line = i + 1 + (isHeader ? 1 : 0);
    if (r.length !== fields) fail(`${file}:${line}: the row has ${r.length} columns, expected ${fields}`);
    const cells = columns.map((c) => r[c].trim());
    return { name: `${file}:${line}`, x: cells.map((c) => (c === "" || /^(na|nan)$/i.test(c) ? NaN : Number(c))) };
  });
}

function tokenize(text, tok) {
  // toolkit's tokenizer: lower-case, then split by level; id 1 for unknown tokens, truncated to max_length
  let t = tok.lowercase ? text.toLowerCase() : text;
  let parts;
  if (tok.level === "space") parts = t.split(" ").filter((s) => s);
  else if (tok.level === "char") parts = [...t].filter((c) => !/\s/.test(c) || c === " ");
  else parts = t.match(/[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]/gu) || []; // Python's \w+|[^\w\s] on str
  const index = tokenize.cache || (tokenize.cache = new Map(tok.vocab.map((w, i) => [w, i])));
  return parts.map((p) => (index.has(p) ? index.get(p) : tok.unk_id)).slice(0, tok.max_length);
}

function decodePng(file) {
  // A minimal decoder: 8-bit grayscale or RGB, not interlaced (what toolkit and most tools write)
  const buf = fs.readFileSync(file);
  if (buf.readUInt32BE(0) !== 0x89504e47) fail(`${file}: not a PNG file`);
  let pos = 8, width, height, depth, type, interlace;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), kind = buf.toString("ascii", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === "IHDR") [width, height, depth, type, interlace] = [data.readUInt32BE(0), data.readUInt32BE(4), data[8], data[9], data[12]];
    if (kind === "IDAT") idat.push(data);
    pos += 12 + len;
  }
  const channels = { 0: 1, 2: 3 }[type];
  if (depth !== 8 || !channels || interlace) fail(`${file}: only 8-bit grayscale or RGB PNGs, not interlaced`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels, out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)], row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? out[y * stride + x - channels] : 0, b = y > 0 ? out[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? out[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      out[y * stride + x] = (row[x] + pred) & 0xff;
    }
  }
  return { width, height, channels, pixels: out };
}

function imageRow(file, pre, shape) {
  const [c, h, w] = shape;
  const img = decodePng(file);
  if (img.width !== w || img.height !== h || img.channels !== c)
    fail(`${file}: ${img.width}x${img.height} with ${img.channels} channel(s); this example needs ${w}x${h} with ${c} (toolkit predict resizes)`);
  const x = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++)
    for (let i = 0; i < h * w; i++) {
      const v = Math.fround(img.pixels[i * c + k] / 255); // pixels in [0, 1], channel-first (C, H, W)
      x[k * h * w + i] = Math.fround(Math.fround(v - Math.fround(pre.mean[k])) / Math.fround(pre.std[k]));
    }
  return x;
}

// ------------------------------------------------------------------------------------------ main
async function main() {
  const args = process.argv.slice(2);
  const json = args.includes("--json");
  const texts = [];
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--text") texts.push(args[++i]);
    else if (args[i] !== "--json") files.push(args[i]);
  }
  const modelPath = files.shift();
  if (!modelPath) fail("usage: node predict.js MODEL.onnx [INPUT...] [--text T] [--json]");
  const meta = sidecar(modelPath);
  const port = meta.inputs[0], pre = port.preprocessing || {};
  const names = [], rows = [];
  if (pre.type === "tokenize") {
    for (const [i, t] of texts.entries()) {
      if (!t || !t.trim()) fail(`--text #${i + 1} is an empty text`);
      names.push(`--text #${i + 1}`);
      rows.push(tokenize(t, pre.tokenizer));
    }
  } else if (pre.per === "channel") {
    for (const f of files) { names.push(f); rows.push(imageRow(f, pre, port.shape.slice(1))); }
  } else if (pre.per === "feature") {
    for (const f of files)
      for (const r of csvRows(f, pre, port.shape[1])) { names.push(r.name); rows.push(standardize(r.x, pre.mean, pre.std)); }
  } else fail(`this example handles tabular, image and token-id text models, not ${meta.task} with ${port.name}`);
  if (!rows.length) fail("no inputs");

  let feed;
  if (pre.type === "tokenize") {
    const width = Math.max(1, ...rows.map((r) => r.length));
    const ids = new BigInt64Array(rows.length * width); // right-padded with 0
    rows.forEach((r, i) => r.forEach((id, j) => (ids[i * width + j] = BigInt(id))));
    feed = new ort.Tensor("int64", ids, [rows.length, width]);
  } else {
    const size = rows[0].length, x = new Float32Array(rows.length * size);
    rows.forEach((r, i) => x.set(r, i * size));
    feed = new ort.Tensor("float32", x, [rows.length, ...port.shape.slice(1)]);
  }
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  const out = await session.run({ [port.name]: feed });
  const probs = out.probabilities.data, k = meta.labels.length;
  const results = names.map((name, i) => {
    const p = Array.from(probs.slice(i * k, (i + 1) * k));
    const best = p.indexOf(Math.max(...p));
    return { input: name, label: meta.labels[best], probability: p[best] };
  });
  if (json) process.stdout.write(JSON.stringify({ model: modelPath, results }, null, 2) + "\n");
  else for (const r of results) process.stdout.write(`${r.input}: ${r.label} (${r.probability.toFixed(3)})\n`);
}

main().catch((e) => fail(String(e.message || e).split("\n")[0]));
