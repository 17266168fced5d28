"""The Flower ClientApp: one round of local training on the data this client holds.

Flower's SuperNode starts this app in its own process for each message. The message carries the global model
(an ArrayRecord) and, in its ConfigRecord, the job (recipe, preprocessing spec, model shape, local epochs) as
JSON; the node's own configuration (`--node-config`, set by `toolkit federate` / `toolkit federate client`)
says where the data is:

- `partition`: an .npz file with this client's rows, already preprocessed (the simulation writes it);
- `data`: the client's own raw data (CSV, image folder, NPZ, builtin:NAME), preprocessed here with the
  federation's recorded spec, after its columns and labels are checked against it (refused with one line).

The reply holds the trained weights and this client's metrics: its training loss and the received global
model's loss and main metric on its local data (measured before training).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from toolkit.errors import ToolkitError
from toolkit.federate.privacy import client_mods

JOB_KEY = "toolkit-job"  # ConfigRecord key of the JSON job the server sends with every train message

app = ClientApp(mods=client_mods(JOB_KEY))


@app.train()
def train(msg: Message, context: Context) -> Message:
    from toolkit.federate import adapter
    from toolkit.recipe import recipe_from_dict

    t0 = time.perf_counter()
    job = json.loads(str(msg.content["config"][JOB_KEY]))
    rec, spec = recipe_from_dict(job["recipe"]), job["spec"]
    node = context.node_config
    client_id = int(node.get("client-id", context.node_id % 1_000_000))
    try:
        x, y = load_client_data(node, spec, rec)
    except ToolkitError as exc:  # say why on this side too, then let Flower report the failure to the server
        _report(node, f"client {client_id}: {exc}")
        raise
    model = adapter.build_model(rec, spec, tuple(job["input_shape"]), int(job["num_outputs"]))
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    before = adapter.evaluate(model, rec, spec, x, y)
    mu = float(msg.content["config"].get("proximal-mu", 0.0))
    server_round = int(msg.content["config"].get("server-round", 0))
    loss = adapter.train_local(
        model,
        rec,
        spec,
        x,
        y,
        int(job["local_epochs"]),
        mu,
        seed=rec.train.seed + 7919 * server_round + client_id,
    )
    main = job["main_metric"]
    metrics = {
        "num-examples": len(x),
        "client-id": client_id,
        "train_loss": float(loss),
        "local_loss": float(before.get("loss", float("nan"))),
        f"local_{main}": float(before.get(main, float("nan"))),
        "seconds": time.perf_counter() - t0,
    }
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def load_client_data(node: Any, spec: dict[str, Any], rec: Any) -> tuple[np.ndarray, np.ndarray]:
    from toolkit.federate import adapter

    if "partition" in node:
        with np.load(str(node["partition"])) as part:
            return part["x"], part["y"]
    if "data" not in node:
        raise ToolkitError(
            "this SuperNode has no data: start it with `toolkit federate client --data LOCAL_DATA`"
        )
    return adapter.client_arrays(str(node["data"]), spec, rec)


def _report(node: Any, line: str) -> None:
    """Write the refusal where `toolkit federate client` looks for it (its status file), one line."""
    status = node.get("status-file")
    if status:
        Path(str(status)).write_text(line.replace("\n", " ") + "\n")
