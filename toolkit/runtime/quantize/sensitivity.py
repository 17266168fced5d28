"""Which nodes to leave in fp32 when no candidate passes the gate: the most sensitive first.

The quantized and fp32 models run the same validation rows with every intermediate tensor as an output,
and the nodes whose outputs gain the most error over their inputs are excluded first (EXCLUDE_STEPS: 1, 2,
4, ... of them, capped at a quarter of the ranked nodes).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.runtime.providers import Resolution
from toolkit.runtime.quantize.build import QUANTIZABLE
from toolkit.runtime.quantize.session import session

EXCLUDE_STEPS = (1, 2, 4, 8)  # sensitive nodes left in fp32 on each retry (capped at a quarter of them)


def exclusion_steps(ranked: list[str]) -> list[int]:
    """How many of the ranked nodes each retry leaves in fp32: EXCLUDE_STEPS, capped at a quarter."""
    cap = max(1, len(ranked) // 4)
    return [k for k in sorted({min(s, cap) for s in EXCLUDE_STEPS}) if k <= len(ranked)]


def sensitive_nodes(
    pre: Path, quantized: Any, feeds: dict[str, np.ndarray], provider: Resolution
) -> list[str]:
    """Names of the pre-processed graph's quantizable nodes, most sensitive first: the relative error of
    each node's output (quantized vs fp32, on validation rows) minus the largest error of its inputs."""
    import onnx

    fp32 = onnx.load(str(pre))
    produced = {o: n for n in fp32.graph.node for o in n.output}
    q_tensors = {o for n in quantized.graph.node for o in n.output} | {o.name for o in quantized.graph.output}
    wanted = [
        o
        for n in fp32.graph.node
        for o in n.output
        if o and o in q_tensors and (n.op_type in QUANTIZABLE or any(i in produced for i in n.input))
    ]
    rows = {k: v[: min(len(v), 128)] for k, v in feeds.items()}
    ref = _intermediate(fp32, wanted, rows, provider)
    got = _intermediate(quantized, [w for w in wanted if w in ref], rows, provider)
    err: dict[str, float] = {}
    for name, a in ref.items():
        b = got.get(name)
        if b is None or a.shape != b.shape or not np.issubdtype(a.dtype, np.floating):
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        err[name] = float(np.linalg.norm(a64 - b64) / (np.linalg.norm(a64) + 1e-12))
    jumps = []
    for n in fp32.graph.node:
        if n.op_type not in QUANTIZABLE or not n.output or n.output[0] not in err:
            continue
        before = max((err.get(i, 0.0) for i in n.input if i in produced), default=0.0)
        jumps.append((err[n.output[0]] - before, n.name))
    jumps.sort(reverse=True)
    return [name for _, name in jumps if name]


def _intermediate(
    proto: Any, names: list[str], feeds: dict[str, np.ndarray], provider: Resolution
) -> dict[str, np.ndarray]:
    """The named tensors of a graph, made outputs (types from shape inference), on the given rows."""
    import onnx

    model = copy.deepcopy(proto)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass
    types = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    existing = {o.name for o in model.graph.output}
    added = []
    for name in names:
        if name in existing:
            added.append(name)
        elif name in types:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(types[name])
            model.graph.output.append(vi)
            added.append(name)
    try:
        sess = session(model, None, provider)
        return dict(zip(added, sess.run(added, feeds)))
    except Exception:
        return {}
