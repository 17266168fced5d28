"""The runtime side and the CLI entry point never import torch (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
]

# A meta-path hook that refuses torch, as an install without torch would: `import torch` raises
# ModuleNotFoundError (an ImportError), and libraries that probe for torch (scipy) see it as absent.
BLOCK = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(f'import of {name} halted: torch is blocked', name=name)\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120)


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
