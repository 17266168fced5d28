"""Explanations of exported models' predictions, computed with onnxruntime and numpy from the metadata.

One implementation for the CLI (`toolkit explain`), the server (`/v2/models/NAME/explain`, `/v1/...:explain`)
and the edge runner (`runner.py explain ...`): the modules listed in PORTABLE import neither toolkit nor torch
(only numpy, Pillow for pictures, shap for KernelSHAP on tables, and the runner's pre/post-processing through
`_core`), so `toolkit edge pack` copies them into a bundle as the package `explain/`.

    engine.py          which method fits which model; runs it on preprocessed rows -> JSON-able results
    scores.py          the number being explained (target class probability, a value, a forecast step)
    occlusion.py       patches / features / time steps set to the training mean, one batch of masks
    rise.py            RISE: random smooth masks, the score-weighted average mask
    gradients.py       integrated gradients, gradients by finite differences through onnxruntime
    tabular.py         KernelSHAP through the `shap` library (toolkit[explain])
    tokens.py          leave-one-out and occlusion over a text's tokens
    reconstruction.py  the per-pixel (per-feature) reconstruction error of an autoencoder
    plots.py           PNG figures: heat-map grids, bar plots, series and token pictures (Pillow)
    terminal.py        results as text, coloured with ANSI codes
    edge.py            `runner.py explain ...` in a bundle
    api.py             the toolkit function behind `toolkit explain` (not shipped: OnnxModel, atomic writes)
    serving.py         the server's explain endpoints (not shipped)
    evaluate.py        deletion (faithfulness) and rank agreement measures for benchmarks and tests
"""

PORTABLE = (
    "__init__.py",
    "_core.py",
    "engine.py",
    "scores.py",
    "occlusion.py",
    "rise.py",
    "gradients.py",
    "tabular.py",
    "tokens.py",
    "reconstruction.py",
    "plots.py",
    "terminal.py",
    "edge.py",
)
