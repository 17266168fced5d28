"""Differential privacy with Flower's own mechanisms, chosen by `federate.privacy.mode`.

- server: central DP, the server clips each client's update and adds Gaussian noise to the aggregate
  (DifferentialPrivacyServerSideFixedClipping);
- client: central DP, each client clips its own update (Flower's fixedclipping_mod) and the server adds the
  noise (DifferentialPrivacyClientSideFixedClipping): the server never sees an unclipped update;
- local: each client clips its update and adds Laplace noise before sending it (LocalDpMod, local DP with
  epsilon/delta per update): the server never sees an update without noise.

The settings are recorded in the run's metrics.json (`federated.privacy`) and the recipe (`federate.privacy`),
and through them in the exported model's metadata.
"""

from __future__ import annotations

import json
from typing import Any

from toolkit.recipe import PrivacyConfig

MECHANISMS = {
    "server": "flwr DifferentialPrivacyServerSideFixedClipping (Gaussian noise, fixed clipping on the server)",
    "client": "flwr DifferentialPrivacyClientSideFixedClipping + fixedclipping_mod (clipping on the client)",
    "local": "flwr LocalDpMod (clipping and Laplace noise on the client)",
}


def wrap_strategy(strategy: Any, cfg: PrivacyConfig, sampled_clients: int) -> Any:
    """The strategy wrapped in Flower's central-DP wrapper for modes server and client; as is otherwise."""
    if cfg.mode not in ("server", "client"):
        return strategy
    from flwr.serverapp.strategy import (
        DifferentialPrivacyClientSideFixedClipping,
        DifferentialPrivacyServerSideFixedClipping,
    )

    wrapper = (
        DifferentialPrivacyServerSideFixedClipping
        if cfg.mode == "server"
        else DifferentialPrivacyClientSideFixedClipping
    )
    return wrapper(
        strategy,
        noise_multiplier=cfg.noise_multiplier,
        clipping_norm=cfg.clipping_norm,
        num_sampled_clients=sampled_clients,
    )


def describe(cfg: PrivacyConfig, sampled_clients: int) -> dict[str, Any]:
    """What the run's metadata records about privacy."""
    if cfg.mode == "none":
        return {"mode": "none"}
    out: dict[str, Any] = {
        "mode": cfg.mode,
        "mechanism": MECHANISMS[cfg.mode],
        "clipping_norm": cfg.clipping_norm,
    }
    if cfg.mode in ("server", "client"):
        out.update(
            noise_multiplier=cfg.noise_multiplier,
            noise_std=cfg.noise_multiplier * cfg.clipping_norm / max(sampled_clients, 1),
            sampled_clients=sampled_clients,
        )
    else:
        out.update(epsilon=cfg.epsilon, delta=cfg.delta, sensitivity=cfg.sensitivity)
    return out


def sampled_clients(cfg: Any, clients: int) -> int:
    """How many clients a round samples: Flower's int(connected * fraction_train), at least one."""
    return max(int(clients * cfg.fraction_fit), 1)


def client_mods(job_key: str) -> list[Any]:
    """The ClientApp's mods: one that applies the client-side part of the job's privacy mode (if any); the
    job is the JSON the server sends under `job_key` in each train message's config."""

    def privacy_mod(msg: Any, context: Any, call_next: Any) -> Any:
        return _privacy_mod(msg, context, call_next, job_key)

    return [privacy_mod]


def _privacy_mod(msg: Any, context: Any, call_next: Any, job_key: str) -> Any:
    from flwr.app import MessageType

    if msg.metadata.message_type != MessageType.TRAIN or msg.has_error():
        return call_next(msg, context)
    config = msg.content["config"]
    privacy = json.loads(str(config[job_key]))["recipe"].get("federate", {}).get("privacy", {})
    mode = privacy.get("mode", "none")
    if mode == "client":
        from flwr.clientapp.mod import fixedclipping_mod

        return fixedclipping_mod(msg, context, call_next)
    if mode == "local":
        from flwr.clientapp.mod import LocalDpMod

        mod = LocalDpMod(
            privacy["clipping_norm"], privacy["sensitivity"], privacy["epsilon"], privacy["delta"]
        )
        return mod(msg, context, call_next)
    return call_next(msg, context)
