"""The server's Flower strategy: FedAvg, FedProx or FedAdam, optionally inside Flower's DP wrapper, inside a
recorder that counts what each round sends and receives.

Every round is a train round only (fraction_evaluate=0): a client reports its local metrics in its train
reply (the received global model scored on its own data before training), so each client process starts once
per round. The global model is scored on the server's held-out split by the strategy's evaluate_fn.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, Strategy

from toolkit.federate import privacy
from toolkit.recipe import FederateConfig


def build_strategy(cfg: FederateConfig, clients: int, lr: float) -> Recorder:
    common = dict(
        fraction_train=cfg.fraction_fit,
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_evaluate_nodes=0,
        min_available_nodes=1,  # the server waits for all clients before round 1; later a dead one is skipped
    )
    if cfg.strategy == "fedprox":
        base: Strategy = FedProx(**common, proximal_mu=cfg.proximal_mu)
    elif cfg.strategy == "fedadam":
        base = FedAdam(**common, eta=cfg.server_lr, eta_l=lr)
    else:
        base = FedAvg(**common)
    return Recorder(privacy.wrap_strategy(base, cfg.privacy, privacy.sampled_clients(cfg, clients)))


def _bytes(record: Any) -> int:
    return int(record.count_bytes()) if hasattr(record, "count_bytes") else 0


class Recorder(Strategy):
    """Delegates to the wrapped strategy; keeps per round: messages sent and bytes each way, each client's
    reply metrics, the failures (a client that died, timed out or refused its data), and wall time."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.rounds: dict[int, dict[str, Any]] = {}

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        t0 = time.perf_counter()
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        sent = sum(_bytes(r) for m in messages for r in m.content.values())
        self.rounds[server_round] = {"t0": t0, "sent": len(messages), "bytes_down": sent}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        info = self.rounds.setdefault(server_round, {"t0": time.perf_counter(), "sent": 0, "bytes_down": 0})
        ok = [m for m in replies if not m.has_error()]
        info["bytes_up"] = sum(_bytes(r) for m in ok for r in m.content.values())
        info["clients"] = [dict(m.content["metrics"]) for m in ok if "metrics" in m.content]
        info["errors"] = [_error_line(m) for m in replies if m.has_error()]
        info["failed"] = info["sent"] - len(ok)
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)


def _error_line(msg: Message) -> str:
    reason = str(msg.error.reason)
    # A ClientApp exception arrives as "<class 'toolkit.errors.ToolkitError'>:<'message'>": keep the message.
    if ":<'" in reason:
        reason = reason.split(":<'", 1)[1].rstrip(">").rstrip("'")
    return f"node {msg.metadata.src_node_id}: {reason.splitlines()[0] if reason else 'failed'}"
