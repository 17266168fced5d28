"""Latency of fp32 and every candidate, measured in turns at each batch size.

Speed-ups are paired per round (toolkit.runtime.bench.paired_speedup), so load from another tenant of the
machine hits all alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.runtime.evalset import repeat_rows
from toolkit.runtime.providers import Resolution
from toolkit.runtime.quantize.gate import Candidate
from toolkit.runtime.quantize.session import session

BATCHES = (1, 64)


def measure_speed(
    fp32: Any,
    candidates: list[Candidate],
    feeds: dict[str, np.ndarray],
    threads: int,
    provider: Resolution,
    rounds: int,
    slice_seconds: float,
    batches: Sequence[int] = BATCHES,
) -> dict[int, float]:
    """p50 latency of fp32 and every candidate at each batch size, measured in turns; fills the
    candidates' latency and speed-ups and returns fp32's latency by batch size."""
    from toolkit.runtime.bench import interleaved, paired_speedup

    sessions = {"fp32": session(fp32, threads, provider)}
    for c in candidates:
        sessions[c.name] = session(c.proto, threads, provider)
    base: dict[int, float] = {}
    for b in batches:
        rows = repeat_rows(feeds, b)
        calls = {name: (lambda s=s, rows=rows: s.run(None, rows)) for name, s in sessions.items()}
        times = interleaved(calls, rounds=rounds, slice_seconds=slice_seconds, warmup_seconds=0.1)
        base[b] = float(np.median(np.concatenate(times["fp32"])))
        for c in candidates:
            c.latency[b] = float(np.median(np.concatenate(times[c.name])))
            c.speedup[b] = paired_speedup(times["fp32"], times[c.name])
    return base
