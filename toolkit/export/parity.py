"""Parity: the exported graph against PyTorch on the same inputs, at shapes other than the traced ones.

The same inputs go through onnxruntime and the wrapped module, at batch sizes and sequence lengths other
than the traced ones; any output beyond ATOL + RTOL * |torch| fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from toolkit.errors import ToolkitError, one_line
from toolkit.export.exporters import TRACE_BATCH
from toolkit.export.signatures import Signature

# Parity: every output, at every probed shape, within |onnx - torch| <= ATOL + RTOL * |torch|.
ATOL, RTOL = 1e-4, 1e-3
BATCH_SIZES = (1, 3, 17, 64)
PARITY_SEED = 0


def check_parity(sig: Signature, model_bytes: bytes) -> dict[str, Any]:
    """Run the exported graph with onnxruntime and the module with PyTorch on the same inputs, at every
    probed batch size and sequence length; a difference beyond ATOL + RTOL * |torch| raises ToolkitError.

    Returns the figures for the metadata: per output the largest absolute error, the largest relative error
    (over values with |torch| > ATOL) and the largest fraction of the tolerance used (<= 1 passes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # small probes; no thread pool to spin up on a shared machine
    opts.log_severity_level = 4  # errors become ToolkitErrors; the runtime need not log them too
    try:
        session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ToolkitError(
            f"onnxruntime cannot load the exported {sig.role}: {one_line(exc, with_type=True)}"
        ) from exc
    rng = np.random.default_rng(PARITY_SEED)
    stats = {p.name: {"max_abs": 0.0, "max_rel": 0.0, "tolerance_used": 0.0} for p in sig.outputs}
    cases = 0
    for length in sig.lengths:
        for batch in BATCH_SIZES:
            where = f"batch {batch}" + (f", sequence length {length}" if length is not None else "")
            arrays = sig.sample(rng, batch, length)
            with torch.no_grad():
                expected = sig.module(*(torch.from_numpy(a) for a in arrays))
            expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
            feeds = {p.name: a for p, a in zip(sig.inputs, arrays)}
            try:
                got = session.run([p.name for p in sig.outputs], feeds)
            except Exception as exc:
                raise ToolkitError(
                    f"the exported {sig.role} fails at {where}: {one_line(exc, with_type=True)}"
                ) from exc
            for port, ref, onnx_out in zip(sig.outputs, expected, got):
                ref = ref.numpy()
                if onnx_out.shape != ref.shape:
                    raise ToolkitError(
                        f"parity check failed: output {port.name!r} has shape {list(onnx_out.shape)} in ONNX "
                        f"but {list(ref.shape)} in PyTorch at {where}"
                    )
                err = np.abs(onnx_out.astype(np.float64) - ref.astype(np.float64))
                scale = np.abs(ref.astype(np.float64))
                s = stats[port.name]
                if err.size:
                    big = scale > ATOL
                    s["max_abs"] = max(s["max_abs"], float(err.max()))
                    if big.any():
                        s["max_rel"] = max(s["max_rel"], float((err[big] / scale[big]).max()))
                    s["tolerance_used"] = max(s["tolerance_used"], float((err / (ATOL + RTOL * scale)).max()))
                if not np.isfinite(err).all() or s["tolerance_used"] > 1.0:
                    raise ToolkitError(
                        f"parity check failed: output {port.name!r} differs from PyTorch by up to "
                        f"{s['max_abs']:.3g} at {where} (allowed: atol {ATOL:g} + rtol {RTOL:g}); nothing written"
                    )
            cases += 1
    return {
        "atol": ATOL,
        "rtol": RTOL,
        "runtime": f"onnxruntime {ort.__version__} (CPUExecutionProvider)",
        "batch_sizes": list(BATCH_SIZES),
        "sequence_lengths": [n for n in sig.lengths if n is not None],
        "traced": {"batch": TRACE_BATCH, "sequence_length": sig.trace_length},
        "cases": cases,
        "outputs": stats,
    }
