"""Data-parallel training across processes with torch.distributed: one rank's view of the process group.

torchrun (or `toolkit train --nproc N`, which starts torchrun's engine, toolkit.train.launch) runs the same
`toolkit train` in every process and sets RANK / WORLD_SIZE / LOCAL_RANK. Each process then:

- joins the process group (gloo on CPU, nccl on CUDA) with a timeout (TOOLKIT_DIST_TIMEOUT seconds);
- trains a DistributedDataParallel copy of the model on its shard of every global batch (`ShardedBatches`):
  all ranks draw the same seeded permutation, cut each global batch of `train.batch_size` samples into
  contiguous per-rank pieces (no duplicates, no gaps), and a DDP communication hook weights each rank's
  gradient by its share of the batch, so the all-reduced step equals one process's step on the global batch;
- scores its shard of the validation and test splits and gathers the outputs in order (`sharded_predict`),
  so every rank computes the metrics one process would;
- reads checkpoints on rank 0 and broadcasts them (nodes need not share a file system); only rank 0 writes
  the run directory (`is_main`).

Without torchrun's variables (WORLD_SIZE unset or 1) every function here is a no-op, and training is exactly
the single-process loop.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from toolkit.errors import ToolkitError

DEFAULT_TIMEOUT_S = 300  # a rank that waits longer than this for the others fails (TOOLKIT_DIST_TIMEOUT)


# --------------------------------------------------------------------------------------------- the group
def launched() -> bool:
    """True inside a process started by torchrun (or `--nproc`) with more than one process in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The process that writes the run directory and prints (rank 0; always true in one process)."""
    return rank() == 0


def restarted() -> bool:
    """True when torchrun restarted the worker group (elastic): the run continues from its last.pt."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def timeout_s() -> float:
    raw = os.environ.get("TOOLKIT_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        return float(raw)
    except ValueError:
        raise ToolkitError(f"TOOLKIT_DIST_TIMEOUT must be seconds (a number), got {raw!r}") from None


def init(device: str) -> None:
    """Join the process group torchrun described in the environment (no-op without one).

    CUDA: one GPU per local rank and the nccl backend; otherwise gloo over TCP."""
    if not launched() or dist.is_initialized():
        return
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ToolkitError(
                f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()}; use at most one "
                "process per GPU (--nproc) or train.device=cpu"
            )
        torch.cuda.set_device(local)
    timeout = timedelta(seconds=timeout_s())
    try:
        # The store torchrun describes (env://) under a prefix per restart attempt: a restarted group must
        # not read the addresses its dead predecessors published there.
        store, r, world = next(dist.rendezvous("env://", timeout=timeout))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"toolkit/attempt-{attempt}", store)
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend, store=store, rank=r, world_size=world, timeout=timeout)
    except Exception as exc:  # a peer that never comes, a port that is closed
        from toolkit.errors import one_line

        raise ToolkitError(f"cannot join the process group: {one_line(exc, with_type=True)}") from None


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast(obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank (a decision taken once: a run directory, a checkpoint)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def agree(fn) -> Any:
    """Run fn on rank 0 only and return its result, or raise its ToolkitError, on every rank, so a
    decision (or a one-line error) is the same everywhere and no rank waits for a peer that gave up."""
    result: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            result = ("ok", fn())
        except ToolkitError as exc:
            result = ("error", str(exc))
    status, value = broadcast(result)
    if status == "error":
        raise ToolkitError(value)
    return value


def load_on_main(path: Path) -> dict[str, Any] | None:
    """A checkpoint read by rank 0 and sent to every rank (None when the file does not exist)."""
    from toolkit.train.checkpoint import load_checkpoint

    return agree(lambda: load_checkpoint(path) if path.is_file() else None)


# --------------------------------------------------------------------------------------------- training
def check_task(task: Any) -> None:
    if active() and task.custom_epoch:
        raise ToolkitError(
            f"task {task.name!r} has its own training epoch (alternating updates of two networks) and trains "
            "in one process only; run it without torchrun / --nproc"
        )


def shard_bounds(n: int, r: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank r's contiguous piece of n items; sizes differ by at most one, nothing left over."""
    base, extra = divmod(n, world)
    lo = r * base + min(r, extra)
    return lo, lo + base + (r < extra)


class ShardedBatches:
    """This rank's pieces of the global batches of `batches` (same order and contents on every rank)."""

    def __init__(self, batches: Any, hook_state: Any) -> None:
        self.batches, self.state = batches, hook_state
        self.samples = 0  # this rank's samples in the last epoch (weights the reduced train loss)

    def __len__(self) -> int:
        return len(self.batches)

    def __getattr__(self, name: str) -> Any:  # what the loop reads from its batches (x: the device)
        if name == "batches":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.batches, name)

    def __iter__(self):
        r, world = rank(), world_size()
        seed = torch.initial_seed()  # the loop seeded this epoch: the permutation is the same on all ranks
        self.samples = 0
        for i, (xb, yb) in enumerate(self.batches):
            if i == 0 and r > 0:  # after the shared permutation: dropout and augmentation differ by rank
                torch.manual_seed((seed + r * 104_729) % (2**63 - 1))
            lo, hi = shard_bounds(len(xb), r, world)
            self.state.weight = (hi - lo) / len(xb)
            if hi == lo:  # fewer samples than ranks in the last batch: a zero-weight step keeps DDP in step
                lo, hi = 0, 1
            self.samples += int(self.state.weight > 0) * (hi - lo)
            yield xb[lo:hi], yb[lo:hi]


class _HookState:
    weight = 1.0


def _weighted_allreduce(state, bucket):  # unannotated: DDP checks the hook's annotations at run time
    """DDP communication hook: sum of (rank's share of the global batch x its mean gradient) = the mean
    gradient over the global batch, also when the last batch does not split evenly."""
    buf = bucket.buffer()
    buf.mul_(state.weight)
    fut = dist.all_reduce(buf, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def prepare(model: nn.Module, batches: Any, task: Any, device: torch.device) -> tuple[nn.Module, Any]:
    """(the model to train, the batches to train on): a DDP wrapper and this rank's shards when
    distributed; the model and batches unchanged in one process. Evaluation is sharded too."""
    if not active():
        return model, batches
    check_task(task)
    state = _HookState()
    ids = None
    if device.type == "cuda":  # batch statistics over the global batch, as one process sees it (GPU only)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the layers in place: same weights
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    ddp.register_comm_hook(state, _weighted_allreduce)
    task.predict = sharded_predict
    return ddp, ShardedBatches(batches, state)


def mean_losses(losses: dict[str, float], batches: Any) -> dict[str, float]:
    """The epoch's train losses averaged over all ranks' samples (what one process would report)."""
    if not active():
        return losses
    n = float(getattr(batches, "samples", 0))
    t = torch.tensor([v * n for v in losses.values()] + [n], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return {k: float(t[i] / max(float(t[-1]), 1.0)) for i, k in enumerate(losses)}


def sharded_predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Raw outputs for all of x: each rank scores its contiguous piece, every rank gets them all in order."""
    from toolkit.train.tasks import predict_outputs

    lo, hi = shard_bounds(len(x), rank(), world_size())
    mine = predict_outputs(_unwrap(model), x[lo:hi])
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, mine)
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else mine


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
