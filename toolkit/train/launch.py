"""`toolkit train --nproc N`: start N training processes through torchrun's engine (torch.distributed.run).

The command line is handed to torchrun's own argument parser and launcher (`elastic_launch`), so `--nproc`
behaves exactly like `torchrun --nproc-per-node N python -m toolkit train --resume RUN_DIR`: the elastic agent
restarts the whole worker group up to `--max-restarts` times when a worker dies, and each restart continues
from the run's last.pt. Multi-node: the same command on every machine with `--nnodes` and `--rdzv-endpoint`
(c10d rendezvous); a rendezvous that does not complete within `--rdzv-timeout` is a one-line error.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from toolkit.errors import ToolkitError, one_line


def cpu_warning(nproc: int) -> str | None:
    """A warning when more processes than cores would share this machine (they slow each other down)."""
    cores = os.cpu_count() or 1
    if nproc > cores:
        return (
            f"--nproc {nproc} is more than this machine's {cores} cores: the processes will compete for "
            "them and training gets slower, not faster"
        )
    return None


def torchrun_args(
    run_dir: Path,
    nproc: int,
    max_restarts: int = 0,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_timeout: int = 60,
    child_args: tuple[str, ...] = (),
) -> list[str]:
    """The torchrun command line (without `torchrun`) that trains RUN_DIR (whose recipe.yaml is written)."""
    args = ["--nproc-per-node", str(nproc), "--max-restarts", str(max_restarts), "--nnodes", str(nnodes)]
    endpoint = rdzv_endpoint or "localhost:0"  # one machine: a free port on loopback, like --standalone
    run_id = os.environ.get("TOOLKIT_RDZV_ID") or (
        f"toolkit-{run_dir.name}" if rdzv_endpoint else str(uuid.uuid4())
    )
    conf = f"join_timeout={rdzv_timeout},read_timeout={rdzv_timeout},last_call_timeout=1"
    args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id, "--rdzv-conf", conf]
    args += ["--monitor-interval", "0.5", "-m", "toolkit", "train", "--resume", str(run_dir), *child_args]
    return args


def launch(argv: list[str]) -> None:
    """Run torchrun's launcher on `argv` (see torchrun_args); failures become one-line ToolkitErrors."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, get_args_parser

    args = get_args_parser().parse_args(argv)
    if args.rdzv_endpoint and not args.rdzv_endpoint.endswith(":0"):
        probe_endpoint(args.rdzv_endpoint, _conf_timeout(args.rdzv_conf))
    # Each process gets its share of the cores (torchrun would set 1 and print a banner saying so).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(args.nproc_per_node))))
    config, cmd, cmd_args = config_from_args(args)
    try:
        elastic_launch(config=config, entrypoint=cmd)(*cmd_args)
    except ChildFailedError as exc:
        raise ToolkitError(_failure_line(exc)) from None
    except RendezvousError as exc:
        raise ToolkitError(
            f"rendezvous at {args.rdzv_endpoint} did not complete within {_conf_timeout(args.rdzv_conf):g} s "
            f"({one_line(exc, with_type=True)}); check that every node can reach this host and port and that "
            f"all {args.nnodes} nodes were started"
        ) from None


def _conf_timeout(conf: str) -> float:
    items = dict(kv.split("=", 1) for kv in conf.split(",") if "=" in kv)
    return float(items.get("read_timeout", 60))


def probe_endpoint(endpoint: str, timeout: float) -> None:
    """Fail in one line when something listens at the rendezvous endpoint but does not answer like a
    rendezvous store (a wrong service, a half-open firewall): torch's store client would wait for it forever.

    Nothing listening is fine here: this node hosts the store, or torch's client retries within the timeout."""
    import socket
    import threading
    from datetime import timedelta

    from torch.distributed import TCPStore

    host, _, port = endpoint.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError:
        return
    except ValueError:
        raise ToolkitError(f"--rdzv-endpoint must be HOST:PORT (got {endpoint!r})") from None
    answered: list[object] = []

    def connect() -> None:
        try:
            answered.append(TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=timeout)))
        except Exception as exc:  # answered, but not as a store: torch's launcher will say so
            answered.append(exc)

    thread = threading.Thread(target=connect, daemon=True)  # a silent peer can block it for good
    thread.start()
    thread.join(timeout + 1)
    if not answered:
        raise ToolkitError(
            f"rendezvous endpoint {endpoint} accepts connections but did not answer within {timeout:g} s "
            "(not a torchrun rendezvous store?); check the host and port of --rdzv-endpoint"
        )


def _failure_line(exc) -> str:
    """One line for a worker group that failed after its restarts: which rank, how, and its own error."""
    rank, failure = exc.get_first_failure()
    how = (
        f"killed by signal {failure.signal_name()}" if failure.signal_name() != "<N/A>" else "exited"
    ) + f" with code {failure.exitcode}"
    line = f"training process rank {rank} {how}"
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    if message and message != "<N/A>" and not str(message).startswith("To enable traceback"):
        line += f": {str(message).splitlines()[0][:300]}"
    return line + " (its error is printed above)"


def prepare_run(recipe, data, target, overrides, out, resume) -> Path:
    """The run directory the processes will train, with its resolved recipe.yaml written (as `train`
    checks it: a taken --out is refused, --resume continues)."""
    from toolkit.io import write_text
    from toolkit.train.run import resolve_run

    rec, run_dir, resuming = resolve_run(recipe, data, target, overrides, out, resume)
    if not resuming:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "recipe.yaml", f"# resolved recipe of this run (toolkit train)\n{rec.to_yaml()}")
    return run_dir
