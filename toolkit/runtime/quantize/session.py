"""onnxruntime sessions of in-memory candidates at a fixed thread count, and their outputs in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.runtime.providers import Resolution

EVAL_BATCH = 64


def session(proto: Any, threads: int | None, provider: str | Resolution) -> Any:
    """A session of an in-memory model on `provider` (a --provider value, or one resolved already); the
    fall-back, if any, was reported when the provider was resolved."""
    import onnxruntime as ort

    from toolkit.runtime.providers import open_session

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return open_session(proto.SerializeToString(), provider, options=opts)[0]


def run_all(
    sess: Any, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Every row of `feeds` through the session in batches of EVAL_BATCH: {output name: array}."""
    names = list(outputs) if outputs else [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    parts = [
        sess.run(names, {k: v[i : i + EVAL_BATCH] for k, v in feeds.items()}) for i in range(0, n, EVAL_BATCH)
    ]
    return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}
