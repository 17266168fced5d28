"""MkDocs hooks (mkdocs.yml `hooks:`): the generated parts of the docs, made from the code at build time.

A page asks for a generated part with a marker line, `<!-- generated: NAME -->`, replaced by:

- `cli-reference`: every command's reference, from the Typer app (scripts/docs_cli.py);
- `module-diagram`, `module-table`: the module map, from toolkit/'s imports and docstrings
  (scripts/docs_modules.py);
- `results-pipeline`, `results-train-overhead`, `results-edge`, `results-serve`, `results-gpu`: tables
  from bench/results/*.json (scripts/docs_results.py); the pipeline plot is a generated image,
  images/generated/speedups.png.

An unknown marker fails the build, so a renamed part cannot silently vanish from a page.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import docs_cli  # noqa: E402
import docs_modules  # noqa: E402
import docs_results  # noqa: E402

MARKER = re.compile(r"^<!-- generated: ([a-z0-9-]+) -->$", re.M)
PLOT = "images/generated/speedups.png"


@functools.cache
def _module_map() -> dict:
    return docs_modules.scan(ROOT / "toolkit")


GENERATORS = {
    "cli-reference": lambda page: docs_cli.reference(),
    "module-diagram": lambda page: f"```mermaid\n{docs_modules.mermaid(_module_map())}\n```",
    "module-table": lambda page: docs_modules.table(_module_map(), ROOT),
    "results-pipeline": lambda page: docs_results.pipeline(RESULTS, ROOT),
    "results-train-overhead": lambda page: docs_results.train_overhead(RESULTS),
    "results-edge": lambda page: docs_results.edge(RESULTS),
    "results-serve": lambda page: docs_results.serve(RESULTS),
    "results-soak": lambda page: docs_results.soak(RESULTS),
    "results-gpu": lambda page: docs_results.gpu(RESULTS),
    "results-import": lambda page: docs_results.imported(RESULTS),
    "results-distributed": lambda page: docs_results.distributed(RESULTS),
    "results-tables": lambda page: docs_results.tables(RESULTS),
    "results-images": lambda page: docs_results.images(RESULTS),
    "results-pretrain": lambda page: docs_results.pretrain(RESULTS),
    "results-other": lambda page: docs_results.others(RESULTS),
}


def render(markdown: str, page_src: str = "") -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page_src}: unknown generated part {name!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[name](page_src)

    return MARKER.sub(replace, markdown)


def on_pre_build(config):  # noqa: ARG001 - MkDocs' hook signature
    _module_map.cache_clear()  # `mkdocs serve` rebuilds in one process: read the code again


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs' hook signature
    return render(markdown, page.file.src_uri)


def on_files(files, config):
    from mkdocs.structure.files import File

    png = docs_results.speedup_plot(RESULTS)
    if png is not None:
        files.append(File.generated(config, PLOT, content=png))
    return files
