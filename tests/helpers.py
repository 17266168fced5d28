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
