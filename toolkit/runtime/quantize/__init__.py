"""`quantize(MODEL)`: INT8 / FP16 variants of an exported model, kept only when they stay accurate and fast.

Users' two complaints about INT8 are that accuracy silently collapses and that the quantized model is no
faster than fp32 (dynamic quantization of convolutions is several times slower on CPU). Every candidate is
therefore measured, not assumed: the task's main metric on the validation split against the fp32 model on
the same rows (the test split stays untouched: it is what `validate` reports), and p50 latency at batch 1
and 64, measured in turns with fp32 at the same thread count.

`mode="auto"` tries every candidate that fits the graph and keeps the fastest that passes the accuracy
gate and is faster than fp32: not slower at any batch size measured and at least 5% faster at one of them.
A candidate in which nothing was quantized is an error, not a contender. When none passes the gate, it
retries with the most sensitive nodes left in fp32; if still none fits, fp32 is kept and the report says
why. A forced mode whose drop exceeds the budget is refused (nothing written) unless `force`. The kept
model (model.int8.onnx or model.fp16.onnx) carries the fp32 metadata plus a `quantization` section;
quantize.json lists every candidate. No torch anywhere.

One concern per module, as onnxruntime's own quantization tools are laid out:

- api: quantize(), the steps in order;
- build: onnxruntime's pre-processing and one quantized graph per mode (static, dynamic, fp16);
- calibration: the calibration method and sample count (rows: toolkit.runtime.evalset);
- gate: the accuracy gate (metric, drop, budget) and the choice among candidates;
- sensitivity: the nodes left in fp32 on a retry, most sensitive first;
- speed: paired latency of fp32 and the candidates;
- session: sessions of in-memory candidates and their outputs in batches;
- report: the written model's metadata and quantize.json.
"""

from toolkit.runtime.quantize.api import quantize
from toolkit.runtime.quantize.build import MODES
from toolkit.runtime.quantize.calibration import CALIBRATIONS
from toolkit.runtime.quantize.gate import Candidate, choose

__all__ = ["CALIBRATIONS", "MODES", "Candidate", "choose", "quantize"]
