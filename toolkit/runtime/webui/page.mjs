// page.mjs: the browser bundle's page. Loads the model next to it with toolkit-web.mjs, answers the bundled
// samples and checks them against the answers `toolkit predict` gave at pack time (samples/expected.json),
// then offers a form for the user's own input. Everything runs in the page; nothing is sent anywhere.
//
// ?backend=wasm|webgpu|auto picks the runtime (default auto). window.toolkitPage.ready resolves to
// {model, coldStartMs, selfTest} once the samples are answered (tests and bench/web_bench.py wait on it).

import { loadModel } from "./toolkit-web.mjs";
import { el, inputForm, renderResult } from "./form.mjs";

const BACKENDS = { wasm: "WebAssembly", webgpu: "WebGPU" };

/** Two answers equal as runner.close says: same keys and labels, numbers within atol + rtol * |b|. */
export function close(a, b, atol = 1e-4, rtol = 1e-3) {
  if (typeof a === "number" && typeof b === "number") return Math.abs(a - b) <= atol + rtol * Math.abs(b);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => close(x, b[i], atol, rtol));
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => k in b && close(a[k], b[k], atol, rtol));
  }
  return a === b;
}

async function sampleInputs(instances) {
  return Promise.all(instances.map(async (x) => (x && x.file ? (await fetch(x.file)).blob() : x)));
}

/** The bundled samples answered here against samples/expected.json (generators: the labels only). */
async function selfTest(model) {
  const expected = await (await fetch("samples/expected.json")).json();
  const got = await model.predict(await sampleInputs(expected.instances));
  const strip = (r) => (model.kind === "noise" ? { label: r.label } : r);
  const bad = got.findIndex((g, i) => !close(strip(g), strip(expected.results[i])));
  const passed = bad < 0 && got.length === expected.results.length;
  const detail = passed ? `${got.length} samples answered as toolkit predict answered them` : `sample ${bad} differs: ${JSON.stringify(got[bad]).slice(0, 160)}`;
  return { passed, detail, results: got };
}

async function main() {
  const params = new URLSearchParams(location.search);
  const model = await loadModel(new URL(".", import.meta.url), { backend: params.get("backend") || "auto" });
  const test = await selfTest(model);
  const coldStartMs = performance.now(); // from navigation start: page, runtime, model, first answers
  const meta = model.meta;
  document.getElementById("title").textContent = `${meta.task} model (${meta.arch || "onnx"})`;
  document.getElementById("sub").textContent = `runs in this page with onnxruntime-web on ${BACKENDS[model.backend]} · ready in ${coldStartMs.toFixed(0)} ms`;
  const status = document.getElementById("status");
  status.textContent = `self-test: ${test.detail}`;
  status.classList.toggle("error", !test.passed);
  const out = el("div", { id: "out" });
  const form = inputForm(meta, async (read) => {
    let input;
    try {
      input = read();
      const t0 = performance.now();
      const [result] = await model.predict([input]);
      const ms = performance.now() - t0;
      out.replaceChildren(renderResult(result, { latencyMs: ms, history: Array.isArray(input) ? input : [], note: `in the page, ${BACKENDS[model.backend]}` }));
    } catch (exc) {
      out.replaceChildren(renderResult({ error: String(exc.message || exc) }));
    }
  });
  document.getElementById("panel").append(form.element, out);
  return { model, coldStartMs, selfTest: test, timings: model.timings };
}

const ready = main();
ready.catch((exc) => {
  const status = document.getElementById("status");
  status.textContent = `cannot run the model here: ${exc.message || exc}`;
  status.classList.add("error");
});
window.toolkitPage = { ready };
