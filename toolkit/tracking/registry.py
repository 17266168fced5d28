"""Register an ONNX model in MLflow's model registry, with its input/output signature read from the graph.

`toolkit export RUN --register NAME` registers model.onnx (alias `fp32`); `toolkit quantize ... --register NAME`
registers the chosen variant as another version of the same model (alias `int8` or `fp16`), so
`models:/NAME@int8` names it. When the run was tracked with MLflow (RUN_DIR/tracking.json), the model is logged
into that run, so the registry links each version to the training that made it. No torch here: quantize is on
the runtime side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError, one_line
from toolkit.tracking.common import check_kinds

EXPERIMENT = "toolkit-models"  # where a model whose run was not tracked is logged
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def signature(model: Any):
    """MLflow's tensor signature of an ONNX graph: dtypes from the graph, symbolic dims as -1."""
    import numpy as np
    import onnx
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def specs(values: Any) -> Schema:
        out = []
        for v in values:
            t = v.type.tensor_type
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out.append(TensorSpec(dtype, shape, v.name))
        return Schema(out)

    init = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in init]
    return ModelSignature(inputs=specs(inputs), outputs=specs(model.graph.output))


def source_run(run_dir: Path | None) -> str | None:
    """The MLflow run id that trained `run_dir`, when it was tracked with MLflow."""
    if run_dir is None or not (Path(run_dir) / "tracking.json").is_file():
        return None
    import json

    return (json.loads((Path(run_dir) / "tracking.json").read_text()).get("mlflow") or {}).get("run_id")


def register(model_path: Path, name: str, alias: str, run_dir: Path | None = None) -> dict[str, Any]:
    """Log `model_path` with MLflow's onnx flavour and register it as a new version of `name` with `alias`."""
    if not name or not set(name) <= NAME_CHARS:
        raise ToolkitError(
            f"--register takes a model name of letters, digits, '-', '_' and '.' (got {name!r})"
        )
    check_kinds(["mlflow"])
    import mlflow
    import onnx

    from toolkit.tracking.mlflow_backend import client, experiment_id, quiet, tracking_uri

    c = client()
    model = onnx.load(str(model_path))
    run_id = source_run(run_dir)
    mlflow.set_tracking_uri(tracking_uri())
    try:
        with (
            quiet(),
            mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id(c, EXPERIMENT)),
        ):
            info = mlflow.onnx.log_model(
                model,
                name="model" if alias == "fp32" else f"model-{alias}",
                registered_model_name=name,
                signature=signature(model),
                pip_requirements=["onnxruntime", "onnx"],  # not inferred: that would import the world
            )
    except ToolkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - the registry's own failures, in one line
        raise ToolkitError(f"could not register {model_path} as {name!r}: {one_line(exc)}") from None
    version = str(info.registered_model_version)
    c.set_registered_model_alias(name, alias, version)
    c.set_model_version_tag(name, version, "toolkit.variant", alias)
    return {
        "name": name,
        "version": version,
        "alias": alias,
        "uri": f"models:/{name}@{alias}",
        "run_id": run_id,
    }
