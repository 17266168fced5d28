"""The pre- and post-processing core that explanations build on, from one place.

Inside toolkit this is toolkit/runtime/processing.py (and the device program toolkit/runtime/edge/runner.py);
in an edge bundle, where this package is copied beside runner.py as `explain/`, they are the bundle's
processing.py and runner.py (which registers itself as the module `runner` before importing this package,
and puts its folder on sys.path, so its InputError is the one raised here). Which one is decided by where
this package lives, not by what happens to be installed.
"""

from __future__ import annotations

if __package__ and __package__.startswith("toolkit."):
    from toolkit.runtime import processing as core
    from toolkit.runtime.edge import runner  # noqa: F401  (edge.py's Runner)
else:  # an edge bundle: processing.py and runner.py are the modules beside this package
    import processing as core  # type: ignore[no-redef]
    import runner  # type: ignore[no-redef]  # noqa: F401

InputError = core.InputError
Tokenizer = core.Tokenizer
input_kind = core.input_kind
describe = core.describe
read_inputs = core.read_inputs
prepare_instance = core.prepare_instance
batch_feeds = core.batch_feeds
softmax = core.softmax
task_outputs = core.task_outputs
model_layout = core.model_layout
from_model_layout = core.from_model_layout
png_bytes = core.png_bytes


def preprocessing(meta: dict) -> dict:
    """The first input's preprocessing document (standardization, window, tokenizer, image geometry)."""
    return meta["inputs"][0].get("preprocessing") or {}


def image_geometry(meta: dict) -> tuple[int, int, int] | None:
    """(C, H, W) of the images the model reads (also a flattened-image MLP), else None."""
    return core.image_geometry(meta)


def pixels(meta: dict, x):
    """A preprocessed image row (any shape holding C*H*W values) -> (C, H, W) pixels in [0, 1]: the
    standardization undone per channel, or per feature for an MLP's flattened image."""
    import numpy as np

    c, h, w = image_geometry(meta)  # type: ignore[misc]
    pre = preprocessing(meta)
    mean, std = np.asarray(pre["mean"], dtype=np.float64), np.asarray(pre["std"], dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if pre.get("per") == "channel":
        out = x.reshape(c, h, w) * std[:, None, None] + mean[:, None, None]
    else:
        out = (x.reshape(-1) * std + mean).reshape(c, h, w)
    return np.clip(out, 0.0, 1.0)
