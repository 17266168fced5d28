"""`toolkit federate`: federated training with Flower (simulation on one machine, or server and clients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from toolkit.cli._common import console, err_console, handle_errors, print_json, track_overrides


class _SimulateByDefault(TyperGroup):
    """`toolkit federate RECIPE ...` means `toolkit federate simulate RECIPE ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["simulate", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_SimulateByDefault,
    no_args_is_help=True,
    help=(
        "Federated training with Flower: clients train on data that stays with them, the server aggregates "
        "their models into a normal run directory. `toolkit federate RECIPE` simulates N clients on this "
        "machine; `server` and `client` run a real deployment (docs/federated.md)."
    ),
)

# Options shared by `simulate` and `server`: each sets the recipe key of the same name (federate.*).
Clients = Annotated[
    int | None, typer.Option(help="Clients (federate.clients); the server waits for this many.")
]
Rounds = Annotated[int | None, typer.Option(help="Server rounds (federate.rounds).")]
Strategy = Annotated[str | None, typer.Option(help="fedavg, fedprox or fedadam (federate.strategy).")]
FractionFit = Annotated[
    float | None, typer.Option(help="Share of clients sampled per round (federate.fraction_fit).")
]
LocalEpochs = Annotated[int | None, typer.Option(help="Local passes per round (federate.local_epochs).")]
ProximalMu = Annotated[float | None, typer.Option(help="fedprox: proximal weight (federate.proximal_mu).")]
ServerLr = Annotated[float | None, typer.Option(help="fedadam: server learning rate (federate.server_lr).")]
Privacy = Annotated[
    str | None,
    typer.Option(help="Differential privacy: none, server, client or local (federate.privacy.mode)."),
]
Noise = Annotated[
    float | None, typer.Option(help="server/client DP: noise multiplier (federate.privacy.noise_multiplier).")
]
Clip = Annotated[
    float | None, typer.Option(help="DP: L2 clipping norm of updates (federate.privacy.clipping_norm).")
]
Epsilon = Annotated[
    float | None, typer.Option(help="local DP: epsilon per update (federate.privacy.epsilon).")
]
Delta = Annotated[float | None, typer.Option(help="local DP: delta (federate.privacy.delta).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override any recipe key: --set train.lr=3e-4.")
]
Out = Annotated[Path | None, typer.Option(help="Run directory (default runs/NAME-federated, -2, ...).")]
Track = Annotated[
    list[str] | None,
    typer.Option("--track", help="Track the rounds in mlflow and/or tensorboard (repeatable; train.track)."),
]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="No progress bar (logs, CI).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON.")]


_FLAGS = (
    "clients",
    "rounds",
    "strategy",
    "partition",
    "fraction_fit",
    "local_epochs",
    "proximal_mu",
    "server_lr",
    "privacy",
    "noise_multiplier",
    "clipping_norm",
    "epsilon",
    "delta",
)


def _overrides(set_: list[str] | None, **flags: Any) -> list[str]:
    keys = {
        "clients": "clients",
        "rounds": "rounds",
        "strategy": "strategy",
        "partition": "partition",
        "fraction_fit": "fraction_fit",
        "local_epochs": "local_epochs",
        "proximal_mu": "proximal_mu",
        "server_lr": "server_lr",
        "round_timeout": "round_timeout",
        "privacy": "privacy.mode",
        "noise_multiplier": "privacy.noise_multiplier",
        "clipping_norm": "privacy.clipping_norm",
        "epsilon": "privacy.epsilon",
        "delta": "privacy.delta",
    }
    items = list(set_ or [])
    for flag, value in flags.items():
        if value is not None:
            items.append(f"federate.{keys[flag]}={json.dumps(value)}")  # JSON scalars are valid YAML
    return items


class RoundProgress:
    """A rich progress bar over rounds: the global model's validation metric and the clients' loss."""

    def __init__(self, rounds: int, metric: str) -> None:
        self.metric = metric
        self.bar = Progress(
            TextColumn("[bold]round"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.bar.add_task("federate", total=rounds, info="starting Flower ...")

    def start(self) -> None:
        """Called once the recipe and data are accepted and the Flower processes start."""
        self.bar.start()

    def update(self, server_round: int, row: dict[str, str]) -> None:
        value = row.get(f"val_{self.metric}") or ""
        loss = row.get("train_loss") or ""
        info = f"val {self.metric}={float(value):.4f}" if value else ""
        info += f"  clients {row.get('clients')}" + (f"  loss {float(loss):.4f}" if loss else "")
        self.bar.update(self.task, completed=server_round, info=info)

    def stop(self) -> None:
        self.bar.stop()


def _run(fn: Any, rounds: int, metric: str, no_progress: bool, as_json: bool, **kwargs: Any) -> None:
    progress = None if (no_progress or as_json) else RoundProgress(rounds, metric)
    try:
        result = fn(progress=progress, **kwargs)
    finally:
        if progress is not None:
            progress.stop()
    if as_json:
        print_json({"run_dir": str(result.run_dir), **result.metrics})
        return
    m, f = result.metrics, result.metrics["federated"]
    console.print(
        f"[bold]test {m['main_metric']}[/] {m[m['main_metric']]:.4f} (best round {m['best_epoch']} of "
        f"{f['rounds_run']}) · {f['clients']} clients · {f['strategy']} · "
        f"{f.get('bytes_per_round', 0) / 1e3:.1f} kB/round · {f.get('seconds_per_round', 0):.1f} s/round"
    )
    console.print(f"run: [bold]{result.run_dir}[/] (export it like any run: toolkit export {result.run_dir})")


def _resolve_rounds(recipe: str, data: str | None, overrides: list[str]) -> tuple[int, str]:
    from toolkit.federate.adapter import resolve_recipe
    from toolkit.metrics import MAIN_METRIC

    rec = resolve_recipe(recipe, data, None, overrides)
    return (rec.federate.rounds if rec.federate else 10), MAIN_METRIC[rec.task][0]


@app.command("simulate")
@handle_errors
def simulate(
    recipe: Annotated[
        str, typer.Argument(help="Recipe name (see `toolkit recipes`), architecture or YAML path.")
    ],
    clients: Clients = None,
    rounds: Rounds = None,
    strategy: Strategy = None,
    partition: Annotated[
        str | None, typer.Option(help="iid, dirichlet:ALPHA or by-column:COLUMN (federate.partition).")
    ] = None,
    fraction_fit: FractionFit = None,
    local_epochs: LocalEpochs = None,
    proximal_mu: ProximalMu = None,
    server_lr: ServerLr = None,
    privacy: Privacy = None,
    noise_multiplier: Noise = None,
    clipping_norm: Clip = None,
    epsilon: Epsilon = None,
    delta: Delta = None,
    data: Annotated[str | None, typer.Option(help="The data to split among clients (data.source).")] = None,
    client_data: Annotated[
        list[str] | None,
        typer.Option("--client-data", help="One client's own data file instead of a partition (repeatable)."),
    ] = None,
    set_: SetOpt = None,
    out: Out = None,
    track: Track = None,
    no_progress: NoProgress = False,
    as_json: AsJson = False,
) -> None:
    """Simulate federated training on this machine: a Flower SuperLink and one SuperNode process per client
    on loopback, each client holding only its partition. Writes a normal run directory."""
    from toolkit.federate import simulate as simulate_api

    if client_data:
        clients = len(client_data)
    overrides = _overrides(
        set_,
        **{k: v for k, v in locals().items() if k in _FLAGS},  # the federate.* flags given
    ) + track_overrides(track)
    total, metric = _resolve_rounds(recipe, data, overrides)
    _run(
        simulate_api,
        total,
        metric,
        no_progress,
        as_json,
        recipe=recipe,
        data=data,
        overrides=overrides,
        out=out,
        client_data=client_data,
    )


@app.command("server")
@handle_errors
def server(
    recipe: Annotated[str, typer.Argument(help="Recipe name, architecture or YAML path.")],
    data: Annotated[
        str | None,
        typer.Option(help="The server's own evaluation data (preprocessing, best round, test metrics)."),
    ] = None,
    address: Annotated[str, typer.Option(help="HOST:PORT the SuperLink listens on.")] = "0.0.0.0:9092",
    clients: Clients = None,
    rounds: Rounds = None,
    strategy: Strategy = None,
    fraction_fit: FractionFit = None,
    local_epochs: LocalEpochs = None,
    proximal_mu: ProximalMu = None,
    server_lr: ServerLr = None,
    privacy: Privacy = None,
    noise_multiplier: Noise = None,
    clipping_norm: Clip = None,
    epsilon: Epsilon = None,
    delta: Delta = None,
    ssl_ca_certfile: Annotated[Path | None, typer.Option(help="TLS: CA certificate (PEM).")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS: server certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS: server private key (PEM).")] = None,
    insecure: Annotated[
        bool, typer.Option(help="Plain HTTP, no TLS (trusted networks and tests only).")
    ] = False,
    auth_key: Annotated[
        list[Path] | None,
        typer.Option(help="Admit only clients with these public keys (Flower SuperNode auth; repeatable)."),
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the clients to connect.")
    ] = 600.0,
    set_: SetOpt = None,
    out: Out = None,
    track: Track = None,
    no_progress: NoProgress = False,
    as_json: AsJson = False,
) -> None:
    """Run the server of a federation: wait for --clients clients, train, write the run directory."""
    from toolkit.federate import serve

    overrides = _overrides(set_, **{k: v for k, v in locals().items() if k in _FLAGS}) + track_overrides(
        track
    )
    tls = None
    if ssl_ca_certfile or ssl_certfile or ssl_keyfile:
        tls = {
            "ca": str(ssl_ca_certfile or ""),
            "cert": str(ssl_certfile or ""),
            "key": str(ssl_keyfile or ""),
        }
    total, metric = _resolve_rounds(recipe, data, overrides)
    _run(
        serve,
        total,
        metric,
        no_progress,
        as_json,
        recipe=recipe,
        data=data,
        overrides=overrides,
        out=out,
        address=address,
        tls=tls,
        insecure=insecure,
        auth_keys=[str(k) for k in auth_key or []],
        connect_timeout=connect_timeout,
    )


@app.command("client")
@handle_errors
def client(
    data: Annotated[str, typer.Option(help="This client's own data (CSV, image folder, NPZ).")],
    server: Annotated[str, typer.Option(help="The server's HOST:PORT.")],
    root_certificates: Annotated[
        Path | None, typer.Option(help="TLS: the CA certificate that signed the server's certificate.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Plain HTTP, no TLS (trusted networks and tests only).")
    ] = False,
    auth_key: Annotated[
        Path | None, typer.Option(help="This client's private key (Flower SuperNode authentication).")
    ] = None,
    client_id: Annotated[
        int | None, typer.Option(help="A number naming this client in the server's metrics.")
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the server before giving up.")
    ] = 30.0,
) -> None:
    """Join a federation as one client: train on --data when the server asks; the data never leaves."""
    from toolkit.federate import join

    join(
        data,
        server,
        str(root_certificates) if root_certificates else None,
        insecure,
        str(auth_key) if auth_key else None,
        client_id,
        connect_timeout,
        on_status=lambda line: err_console.print(line),
    )
