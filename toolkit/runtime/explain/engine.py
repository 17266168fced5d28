"""Which explanation fits which model, and running it on preprocessed rows.

`explain_items(meta, run, items, method, target, samples, seed)` is the one entry point the CLI, the server
and the edge runner share: `items` are (name, row) pairs as `read_items` (or `prepare_instance`) makes them,
`run(feeds) -> outputs` runs the model, and each answer is a JSON-able dict.

    images (CNN, or an MLP on flattened images)   occlusion (default), rise, ig  -> an (H, W) map
    tables                                        shap (default), occlusion, ig  -> one value per feature
    series (forecasters)                          occlusion (default), ig        -> one value per past step
    texts                                         loo (default), occlusion       -> one value per token
    autoencoders (task reconstruct)               reconstruction                 -> the error map
    GAN generators, encoders                      not applicable: a one-line error

Every method attributes the same number (scores.py) relative to the same baseline, the training mean (zeros
in the model's standardized units), so maps of different methods are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _core
from ._core import InputError
from .gradients import integrated_gradients, steps_for
from .occlusion import fit_windows, occlusion, window_masks
from .plots import hex_colour
from .reconstruction import reconstruction_error
from .rise import rise
from .scores import Scorer, resolve_target
from .tabular import default_samples, kernel_shap
from .tokens import split, token_attributions, variants

METHODS = {  # what the model reads -> (default method, every method that fits)
    "image": ("occlusion", ("occlusion", "rise", "ig")),
    "tabular": ("shap", ("shap", "occlusion", "ig")),
    "series": ("occlusion", ("occlusion", "ig")),
    "text": ("loo", ("loo", "occlusion")),
    "reconstruct": ("reconstruction", ("reconstruction",)),
}
DEFAULT_SAMPLES = {"occlusion": 1024, "rise": 1000, "ig_steps": 16}


@dataclass
class Options:
    method: str | None = None
    target: str | None = None
    samples: int | None = None  # budget in model evaluations per input (None: the method's default)
    seed: int = 0


def kind_of(meta: dict) -> str:
    """What is explained: image, tabular, series, text or reconstruct; a one-line error where nothing fits."""
    task = meta["task"]
    if task == "generate":
        raise InputError(
            "explain does not apply to a GAN generator: it draws images from noise and a label, so there is "
            "no decision about an input to attribute (explain a classifier of its images instead)"
        )
    if meta.get("role") == "encoder":
        raise InputError(
            "explain does not apply to an encoder (its output is a latent code); explain model.onnx"
        )
    if task == "reconstruct":
        return "reconstruct"
    kind = _core.input_kind(meta)
    if kind in ("tokens", "text"):
        return "text"
    if _core.image_geometry(meta) is not None:
        return "image"
    return kind


def check_method(meta: dict, method: str | None) -> str:
    """The method to use: the given one when it fits the model, else the default; one line when it does not."""
    kind = kind_of(meta)
    default, allowed = METHODS[kind]
    if method is None:
        return default
    if method not in allowed:
        what = {"reconstruct": "an autoencoder", "image": "an image model"}.get(kind, f"a {kind} model")
        raise InputError(f"--method {method!r} does not fit {what}; allowed: {', '.join(allowed)}")
    return method


def reading_meta(meta: dict) -> dict:
    """The metadata to read inputs with: a token model's texts are kept as strings (so the explanation can
    show the words; tokens.py encodes them), everything else as the model reads it."""
    if _core.input_kind(meta) != "tokens":
        return meta
    port = {**meta["inputs"][0], "dtype": "string"}
    return {**meta, "inputs": [port, *meta["inputs"][1:]]}


def read_items(meta: dict, paths: list[str], texts: list[str] = ()) -> list[tuple[str, object]]:
    """Files, folders and --text strings -> [(name, row or InputError)] (the runner's readers)."""
    kind_of(meta)
    return _core.read_inputs(reading_meta(meta), list(paths), list(texts))


def explain_items(
    meta: dict, run: Callable[[dict], dict], items: list, options: Options, advance: Callable | None = None
) -> list[dict]:
    """One JSON-able result per item, in order; an item holding an InputError becomes {"input", "error"}.
    `advance()` is called after each item (a progress bar)."""
    method = check_method(meta, options.method)
    if options.samples is not None and options.samples < 1:
        raise InputError(f"--samples must be a positive integer (got {options.samples})")
    out = []
    for name, row in items:
        if isinstance(row, InputError):
            out.append({"input": name, "error": str(row)})
            continue
        result = {"input": name, "task": meta["task"], "method": method}
        result.update(explain_row(meta, run, row, method, options))
        out.append(result)
        if advance is not None:
            advance()
    return out


def explain_row(meta: dict, run: Callable[[dict], dict], row, method: str, options: Options) -> dict:
    """The explanation of one preprocessed row by `method` (already checked against the model)."""
    kind = kind_of(meta)
    if kind == "reconstruct":
        return _explain_reconstruction(meta, run, np.asarray(row, dtype=np.float32))
    if kind == "text":
        return _explain_text(meta, run, row, method, options)
    x = np.asarray(row, dtype=np.float32)
    scorer = Scorer(meta, run, _array_feed(meta, x.shape))
    head = _target(meta, scorer, x[None], options.target)
    if kind == "image":
        body = _explain_image(meta, scorer, x, method, options)
    elif kind == "series":
        body = _explain_series(meta, scorer, x, method, options)
    else:
        body = _explain_features(meta, scorer, x, method, options)
    return {**head, **body, "evaluations": scorer.calls}


def _array_feed(meta: dict, row_shape: tuple[int, ...]) -> Callable:
    name = meta["inputs"][0]["name"]
    return lambda batch: {
        name: _core.model_layout(meta, np.asarray(batch, dtype=np.float32).reshape(len(batch), *row_shape))
    }


def _target(meta: dict, scorer: Scorer, one, target) -> dict:
    """Resolve --target on the input's own prediction (`one`: a batch of the one row); the result's head:
    target, score and the prediction."""
    row = scorer.matrix(one)[0]
    scorer.index, name = resolve_target(meta, target, row)
    head: dict = {"target": name, "score": _num(row.mean() if scorer.index is None else row[scorer.index])}
    if meta["task"] == "classify":
        labels = meta.get("labels") or [str(i) for i in range(len(row))]
        order = np.argsort(-row, kind="stable")[:3]
        head["target_index"] = scorer.index
        head["label"] = labels[int(order[0])]
        head["top"] = [{"label": labels[int(i)], "probability": _num(row[i])} for i in order]
    elif meta["task"] == "forecast":
        head["forecast"] = [_num(v) for v in row]
    return head


def _explain_image(meta: dict, scorer: Scorer, x: np.ndarray, method: str, options: Options) -> dict:
    c, h, w = _core.image_geometry(meta)  # type: ignore[misc]
    img = x.reshape(c, h, w)
    score = lambda batch: scorer(batch.reshape(len(batch), *x.shape))  # noqa: E731
    baseline = np.zeros_like(img)  # the training mean, in standardized units
    extra: dict = {}
    if method == "occlusion":
        window, stride = fit_windows(
            (h, w), max(1, round(min(h, w) / 8)), options.samples or DEFAULT_SAMPLES["occlusion"]
        )
        amap = occlusion(score, img, window_masks((h, w), window, stride), baseline)
        extra = {"window": window, "stride": stride}
    elif method == "rise":
        n = options.samples or DEFAULT_SAMPLES["rise"]
        cell = min(7, max(2, min(h, w) // 2))
        amap = rise(score, img, baseline, n, np.random.default_rng(options.seed), cell)
        extra = {"cell": cell}
    else:
        steps = steps_for(options.samples or DEFAULT_SAMPLES["ig_steps"] * (img.size + 1), img.size)
        attr, gap = integrated_gradients(score, img, baseline, steps)
        amap = attr.sum(axis=0)  # channels summed: one value per pixel
        extra = {"steps": steps, "completeness_gap": _num(gap)}
    return {
        "shape": [h, w],
        "attributions": _nested(amap),
        "baseline_score": _num(score(baseline[None])[0]),
        **extra,
    }


def _explain_features(meta: dict, scorer: Scorer, x: np.ndarray, method: str, options: Options) -> dict:
    names = list(_core.preprocessing(meta).get("feature_names") or [f"x{i}" for i in range(x.size)])
    baseline = np.zeros_like(x)
    extra: dict = {}
    if method == "shap":
        values, base = kernel_shap(
            scorer, x, baseline[None], options.samples or default_samples(x.size), options.seed
        )
    elif method == "occlusion":
        values = occlusion(lambda b: scorer(b.reshape(len(b), -1)), x[None], np.eye(x.size, dtype=bool), 0.0)
        base = scorer(baseline[None])[0]
    else:
        steps = steps_for(options.samples or DEFAULT_SAMPLES["ig_steps"] * (x.size + 1), x.size)
        values, gap = integrated_gradients(scorer, x, baseline, steps)
        base, extra = scorer(baseline[None])[0], {"steps": steps, "completeness_gap": _num(gap)}
    pre = _core.preprocessing(meta)
    raw = x * np.asarray(pre.get("std", 1.0)) + np.asarray(pre.get("mean", 0.0))
    return {
        "features": names,
        "values": [_num(v) for v in raw],
        "attributions": [_num(v) for v in values],
        "baseline_score": _num(base),
        **extra,
    }


def _explain_series(meta: dict, scorer: Scorer, x: np.ndarray, method: str, options: Options) -> dict:
    pre = _core.preprocessing(meta)
    steps_in = x.reshape(-1)  # (T,) standardized
    score = lambda b: scorer(b.reshape(len(b), *x.shape))  # noqa: E731
    extra: dict = {}
    if method == "occlusion":
        window, stride = fit_windows((steps_in.size,), 1, options.samples or DEFAULT_SAMPLES["occlusion"])
        values = occlusion(score, steps_in[None], window_masks((steps_in.size,), window, stride), 0.0)
    else:
        steps = steps_for(options.samples or DEFAULT_SAMPLES["ig_steps"] * (steps_in.size + 1), steps_in.size)
        values, gap = integrated_gradients(score, steps_in, 0.0, steps)
        extra = {"steps": steps, "completeness_gap": _num(gap)}
    window = steps_in.astype(np.float64) * float(pre["std"]) + float(pre["mean"])
    return {
        "window": [_num(v) for v in window],
        "attributions": [_num(v) for v in values],
        "baseline_score": _num(score(np.zeros((1, steps_in.size)))[0]),
        **extra,
    }


def _explain_text(meta: dict, run: Callable, row, method: str, options: Options) -> dict:
    raw_text = _core.input_kind(meta) == "text"
    if isinstance(row, str):
        tokens = split(meta, row)
    else:  # token ids (the V2 endpoint): back to the vocabulary's words, padding dropped
        vocab = _core.preprocessing(meta)["tokenizer"]["vocab"]
        tokens = [vocab[int(i)] if 0 <= int(i) < len(vocab) else vocab[1] for i in row if int(i) != 0]
    if not tokens:
        raise InputError("the text has no tokens the model reads")
    rows = variants(meta, tokens, method, raw_text)
    scorer = Scorer(meta, run, lambda batch: _core.batch_feeds(meta, list(batch)))
    head = _target(meta, scorer, rows[:1], options.target)
    values, _ = token_attributions(scorer, rows)
    scale = float(np.abs(values).max()) or 1.0
    return {
        **head,
        "tokens": tokens,
        "attributions": [_num(v) for v in values],
        "colours": [hex_colour(v, scale) for v in values],  # as the terminal and the PNG show them
        "evaluations": scorer.calls,
    }


def _explain_reconstruction(meta: dict, run: Callable, x: np.ndarray) -> dict:
    error, recon, score = reconstruction_error(run, meta, x)
    threshold = ((meta.get("thresholds") or {}).get("score") or {}).get("value")
    body: dict = {
        "target": "reconstruction error",
        "score": _num(score),
        "anomaly": None if threshold is None else bool(score > threshold),
        "threshold": threshold,
        "evaluations": 1,
    }
    geom = _core.image_geometry(meta)
    if geom is not None:
        c, h, w = geom
        amap = error.reshape(c, h, w).mean(axis=0)
        rec = _core.pixels(meta, recon)
        return {**body, "shape": [h, w], "attributions": _nested(amap), "reconstruction": _nested(rec)}
    names = list(_core.preprocessing(meta).get("feature_names") or [f"x{i}" for i in range(error.size)])
    return {**body, "features": names, "attributions": [_num(v) for v in error.reshape(-1)]}


def _num(v) -> float:
    """A float for JSON, to 6 significant digits (attributions are estimates; more digits are noise)."""
    return float(f"{float(v):.6g}")


def _nested(a: np.ndarray) -> list:
    a = np.asarray(a)
    return [_nested(r) for r in a] if a.ndim > 1 else [_num(v) for v in a]
