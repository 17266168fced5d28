"""Assertions shared by test modules (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

ANSI = re.compile(r"\x1b\[[0-9;]*m")

# Python source for a fresh interpreter (`python -c NO_TORCH + code`): a meta-path hook that refuses torch,
# as an install without the training extra would. `import torch` raises ModuleNotFoundError (an
# ImportError), and libraries that probe for torch (scipy) see it as absent.
NO_TORCH = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(f'import of {name} halted: torch is blocked', name=name)\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def assert_one_line_error(result, *needles: str) -> str:
    output = ANSI.sub("", result.output)
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    text = ANSI.sub("", result.stderr or result.output).strip()
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("error:"), text
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def two_class_text_csv(path: Path) -> Path:
    """Two classes told apart by their words, texts of 2 to 30 words (longer than the probed lengths)."""
    rng = np.random.default_rng(0)
    words = {"cat": ["cat", "meow", "purr", "kitten"], "dog": ["dog", "woof", "bark", "puppy"]}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(80):
            label = "cat" if i % 2 else "dog"
            pool = words[label] + ["the", "a", "is", "my"]
            w.writerow([" ".join(rng.choice(pool, size=int(rng.integers(2, 30)))), label])
    return path


JOBS = ["nurse", "teacher", "driver", "cook", "clerk", "pilot"]


def mixed_table_csv(path: Path, n: int = 400, seed: int = 0, cities: int = 40) -> Path:
    """A table with categorical and numeric columns and gaps: job (6 levels, 5% missing), age (10% missing),
    income, city (`cities` levels: embedded when data.onehot_max_levels is below it) and a yes/no label drawn
    from a logistic model with a curved age effect (so a linear model on one-hot columns is not exact)."""
    rng = np.random.default_rng(seed)
    job_effect = rng.normal(0, 1.2, len(JOBS))
    city_effect = rng.normal(0, 1.0, cities)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "age", "income", "city", "label"])
        for _ in range(n):
            j, c = int(rng.integers(len(JOBS))), int(rng.integers(cities))
            age, income = rng.normal(40, 12), rng.normal(50, 15)
            za, zi = (age - 40) / 12, (income - 50) / 15
            logit = job_effect[j] + city_effect[c] + 0.8 * za + 0.6 * zi - 0.9 * za * za + 0.5
            label = "yes" if rng.random() < 1 / (1 + np.exp(-2 * logit)) else "no"
            job = JOBS[j] if rng.random() > 0.05 else ""
            w.writerow([job, f"{age:.1f}" if rng.random() > 0.1 else "", f"{income:.2f}", f"city{c}", label])
    return path
