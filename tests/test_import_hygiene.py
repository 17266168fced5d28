"""The runtime side and the CLI entry point never import torch (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import NO_TORCH

import toolkit

RUNTIME_MODULES = [
    "toolkit",
    "toolkit.runtime",
    "toolkit.metrics",
    "toolkit.io",
    "toolkit.recipe",
    "toolkit.data.preprocess",
    "toolkit.data.tokenizer",
    "toolkit.cli.main",
    "toolkit.cli.explain",
    "toolkit.cli.import_",
    "toolkit.data",  # validate/quantize --data read labelled data through it
    "toolkit.runtime.explain.api",
    "toolkit.runtime.explain.serving",
    "toolkit.tracking",
    "toolkit.tracking.registry",
]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_module_imports_without_torch(module):
    proc = _run(f"import {module}")
    assert proc.returncode == 0, proc.stderr


def test_every_runtime_module_file_imports_without_torch():
    from pathlib import Path

    root = Path(toolkit.__file__).parent / "runtime"
    modules = [
        "toolkit.runtime." + ".".join(p.relative_to(root).with_suffix("").parts)
        for p in root.rglob("*.py")
        if p.name != "__init__.py"
    ]
    code = "\n".join(f"import {m}" for m in modules) or "pass"
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr


def test_cli_help_and_recipes_run_without_torch():
    proc = _run(
        "import sys; sys.argv = ['toolkit', 'recipes', '--json']\nfrom toolkit.cli.main import main\nmain()"
    )
    assert proc.returncode == 0, proc.stderr
    assert "cnn-image" in proc.stdout


def test_the_block_really_blocks():
    proc = _run("import torch")
    assert proc.returncode != 0 and "import of torch halted" in proc.stderr


def test_the_runtime_door_to_pytorch_names_the_extra_when_torch_is_absent():
    """toolkit.runtime.pytorch is how validate and bench reach the checkpoint: without torch it imports,
    says so, and refuses with a one-line error that names the extra to install."""
    proc = _run(
        "from toolkit.runtime import pytorch\n"
        "assert not pytorch.available()\n"
        "try:\n"
        "    pytorch.eager_runner('runs/x', {'task': 'classify'})\n"
        "except pytorch.TorchMissing as exc:\n"
        "    print(exc)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "PyTorch is not installed" in proc.stdout and "toolkit[train]" in proc.stdout
