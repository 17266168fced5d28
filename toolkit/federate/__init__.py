"""Federated training with Flower: the data stays with its owners, the model comes back as a normal run.

- `simulate(recipe, ...)`: one machine; a Flower SuperLink and one SuperNode process per client on loopback,
  each client holding only its partition of the recipe's train split (or its own file with `client_data`).
- `serve(recipe, ...)`: the server of a real deployment (SuperLink + ServerApp); the recipe's data is the
  server's evaluation data.
- `join(data, server, ...)`: one client of a real deployment (a SuperNode on the owner's machine).

The run directory is what `toolkit train` writes, so export, quantize, validate, serve and edge pack work
unchanged. The CLI (`toolkit federate`, `toolkit federate server|client`) is a thin layer over these functions.
Flower itself is imported only by the modules that run inside Flower's processes (client_app, server_app,
strategy), so importing this package needs neither Flower nor torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FederateResult", "simulate", "serve", "join"]


def simulate(*args: Any, **kwargs: Any) -> Any:
    """See toolkit.federate.simulation.simulate."""
    from toolkit.federate.simulation import simulate as _simulate

    return _simulate(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> Any:
    """See toolkit.federate.deploy.serve."""
    from toolkit.federate.deploy import serve as _serve

    return _serve(*args, **kwargs)


def join(*args: Any, **kwargs: Any) -> None:
    """See toolkit.federate.deploy.join."""
    from toolkit.federate.deploy import join as _join

    return _join(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "FederateResult":
        from toolkit.federate.run import FederateResult

        return FederateResult
    raise AttributeError(name)
