"""Export a run to one self-describing ONNX file, proven equal to PyTorch before it is written.

`export_run(RUN_DIR)` rebuilds the best checkpoint, wraps it so that the graph holds what a runtime would
otherwise have to re-implement (softmax, target de-standardization, the anomaly score, pixel scaling), and
exports it with named inputs and outputs and a dynamic batch axis (sequence models: a dynamic sequence axis
too). The result is then run with onnxruntime at batch sizes and sequence lengths other than the traced
ones and compared with PyTorch on every output; any mismatch is a ToolkitError and nothing is written.
Exporters are tried in order (TorchScript, then dynamo) and the first whose graph passes every check is
kept; which one it was is recorded (provenance.exporter).

The training side's one place that needs torch and onnx together, one concern per module:

- api: export_run(), the steps in order;
- signatures: what each task exports (the wrapped module and its named ports, SIGNATURES);
- exporters: PyTorch's exporters and the checks each graph must pass;
- parity: the exported graph against PyTorch at probed shapes;
- metadata: the `toolkit` document (also model.json);
- text: the raw-string text model (model.text.onnx), tokenization inside the graph;
- eager: the checkpoint run as exported, for validate's parity and bench's PyTorch contender.
"""

from toolkit.export.api import ExportResult, export_run, part_path
from toolkit.export.exporters import DEFAULT_OPSET, STANDARD_DOMAINS, supported_opsets
from toolkit.export.signatures import SIGNATURES, Port, Signature
from toolkit.runtime.schema import SCHEMA

__all__ = [
    "DEFAULT_OPSET",
    "SCHEMA",
    "SIGNATURES",
    "STANDARD_DOMAINS",
    "ExportResult",
    "Port",
    "Signature",
    "export_run",
    "part_path",
    "supported_opsets",
]
