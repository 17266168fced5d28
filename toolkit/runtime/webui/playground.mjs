// playground.mjs: the server's playground page. Lists the served models (POST v2/repository/index), builds
// each one's form from its `toolkit` metadata (GET v2/models/NAME/toolkit) and answers it through KServe V1
// (POST v1/models/NAME:predict): labels with bars, a forecast plot, the anomaly score against its threshold,
// the round-trip latency. When the server wants an API key it asks once and keeps it for this tab.

import { describe } from "./toolkit-web.mjs";
import { el, inputForm, renderResult } from "./form.mjs";

const ROOT = new URL("../", import.meta.url); // the server root: this module is served from /ui/
const KEY = "toolkit-api-key";

class NeedsKey extends Error {}

async function call(path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  const init = body === undefined ? { headers } : { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(new URL(path, ROOT), init);
  if (r.status === 401) throw new NeedsKey(key ? "the server refused this API key" : "this server needs an API key");
  const doc = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(doc.error || `HTTP ${r.status}`);
  return doc;
}

function askKey(message) {
  const input = el("input", { type: "password", "data-testid": "api-key", placeholder: "API key", autocomplete: "off" });
  const form = el("form", {
    onsubmit: (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      start();
    },
  }, input, el("button", { type: "submit", "data-testid": "use-key" }, "Use key"));
  const box = el("div", { class: "keybox" }, el("div", { class: "status" }, `${message}: it is sent as 'Authorization: Bearer KEY' and kept for this tab only.`), form);
  document.getElementById("panel").replaceChildren(box);
  input.focus();
}

/** The instance V1 takes for a raw form value: images as {"b64": ...}, everything else as it is. */
async function instance(raw) {
  if (!(raw instanceof Blob)) return raw;
  const url = await new Promise((ok, fail) => {
    const reader = new FileReader();
    reader.onload = () => ok(reader.result);
    reader.onerror = () => fail(reader.error);
    reader.readAsDataURL(raw);
  });
  return { b64: url.slice(url.indexOf(",") + 1) };
}

function showModel(model, buttons) {
  buttons.forEach((b) => b.classList.toggle("active", b.dataset.model === model.name));
  history.replaceState(null, "", `#${encodeURIComponent(model.name)}`);
  const panel = document.getElementById("panel");
  const title = el("h2", {}, model.name);
  if (!model.meta) {
    panel.replaceChildren(title, el("div", { class: "status" }, `${model.why}: use the V2 endpoint POST v2/models/${model.name}/infer`));
    return;
  }
  const out = el("div", { id: "out" });
  const form = inputForm(model.meta, async (read) => {
    let raw;
    form.button.disabled = true;
    try {
      raw = read();
      const body = { instances: [await instance(raw)] };
      const t0 = performance.now();
      const doc = await call(`v1/models/${encodeURIComponent(model.name)}:predict`, body);
      const ms = performance.now() - t0;
      out.replaceChildren(renderResult(doc.predictions[0], { latencyMs: ms, history: Array.isArray(raw) ? raw : [], note: "round trip to the server" }));
    } catch (exc) {
      if (exc instanceof NeedsKey) return askKey(exc.message);
      out.replaceChildren(renderResult({ error: String(exc.message || exc) }));
    } finally {
      form.button.disabled = false;
    }
  });
  panel.replaceChildren(title, form.element, out);
}

async function loadModels() {
  const index = await call("v2/repository/index", {});
  const names = [...new Set(index.filter((m) => m.state === "READY").map((m) => m.name))];
  return Promise.all(names.map(async (name) => {
    try {
      return { name, meta: await call(`v2/models/${encodeURIComponent(name)}/toolkit`) };
    } catch (exc) {
      if (exc instanceof NeedsKey) throw exc;
      return { name, meta: null, why: String(exc.message || exc) };
    }
  }));
}

async function start() {
  const status = document.getElementById("status");
  try {
    const server = await call("v2");
    document.getElementById("server").textContent = `${server.name} ${server.version} · KServe V1 :predict`;
    const models = await loadModels();
    const list = document.getElementById("models");
    const buttons = models.map((m) =>
      el("button", { type: "button", "data-model": m.name, onclick: () => showModel(m, buttons) }, m.name,
        el("span", { class: "task" }, m.meta ? `${m.meta.task} · ${describe(m.meta)}` : "no toolkit metadata")),
    );
    list.replaceChildren(...buttons.map((b) => el("li", {}, b)));
    if (!models.length) {
      document.getElementById("panel").replaceChildren(el("div", { class: "status" }, "no model is ready yet"));
      return;
    }
    const wanted = decodeURIComponent(location.hash.slice(1));
    showModel(models.find((m) => m.name === wanted) || models[0], buttons);
  } catch (exc) {
    if (exc instanceof NeedsKey) return askKey(exc.message);
    if (status) status.textContent = `cannot reach the server: ${exc.message || exc}`;
  }
}

start();
