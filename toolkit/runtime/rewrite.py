"""Graph rewrites `toolkit export` applies where onnxruntime's kernel for an op is the slow one.

The same function in standard ONNX ops that run faster (each proven by the export's parity check, and
listed in the metadata's provenance.rewrites).

- RNN -> a Scan of MatMul + Add + Tanh (toolkit.runtime.recurrent): the RNN op 4x slower at batch 64;
- strided ConvTranspose -> Conv + DepthToSpace (toolkit.runtime.subpixel): 1.5x on the GAN generator.

LSTM and GRU keep their ops: onnxruntime's kernels for those beat the Scan.
"""

from __future__ import annotations

from typing import Any

from toolkit.runtime import recurrent, subpixel


def for_export(model: Any) -> tuple[Any, list[str]]:
    """(rewritten model, what was rewritten, in words: ["1 RNN op -> Scan", ...])."""
    done = []
    model, count = recurrent.lower(model, ops=("RNN",))
    if count:
        done.append(f"{count} RNN op{'s' * (count > 1)} -> Scan")
    model, count = subpixel.lower(model)
    if count:
        done.append(f"{count} ConvTranspose op{'s' * (count > 1)} -> Conv + DepthToSpace")
    return model, done
