"""The generated parts of the docs (scripts/mkdocs_hooks.py): the CLI reference holds every command and
option of the app, the module map every package of toolkit/, the results page every bench/results file."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import docs_cli  # noqa: E402
import docs_modules  # noqa: E402
import mkdocs_hooks  # noqa: E402


def test_cli_reference_has_every_command_and_option():
    text = docs_cli.reference()
    for path, command in docs_cli.commands():
        assert f"`{' '.join(path)}`" in text, path
        for param in command.params:
            for opt in [*param.opts, *param.secondary_opts]:
                if opt.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (path, opt)
        if command.help:
            first = command.help.strip().splitlines()[0]
            assert first.split(";")[0][:40] in text.replace("&#x27;", "'"), (path, first)


def test_cli_reference_shows_no_bool_after_flags():
    assert "<bool>" not in docs_cli.reference()


def test_module_map_covers_every_package_and_its_imports(tmp_path):
    units = docs_modules.scan(ROOT / "toolkit")
    for init in (ROOT / "toolkit").glob("*/__init__.py"):
        name = "toolkit." + init.parent.name
        if name != "toolkit.runtime":
            assert name in units, name
    assert "toolkit.runtime.server" in units and "toolkit.runtime.model" in units
    assert units["toolkit.runtime.server"].summary
    # an import added to the code shows up as an arrow, an import inside a function as a dotted one
    pkg = tmp_path / "toolkit"
    (pkg / "runtime").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""root"""\n')
    (pkg / "a.py").write_text('"""A first line.\n\nmore"""\nfrom toolkit import b\n')
    (pkg / "b.py").write_text('"""B."""\ndef f():\n    from toolkit.runtime import c\n')
    (pkg / "runtime" / "__init__.py").write_text('"""runtime"""\n')
    (pkg / "runtime" / "c.py").write_text('"""C."""\n')
    units = docs_modules.scan(pkg)
    assert units["toolkit.a"].summary == "A first line."
    assert units["toolkit.a"].imports == {"toolkit.b": True}
    assert units["toolkit.b"].imports == {"toolkit.runtime.c": False}
    diagram = docs_modules.mermaid(units)
    assert "a --> b" in diagram and "b -.-> runtime_c" in diagram


def test_results_render_every_benchmark_file():
    results = ROOT / "bench" / "results"
    for name in ("pipeline", "train_overhead", "edge", "serve"):
        assert (results / f"{name}.json").is_file()
    page = mkdocs_hooks.render((ROOT / "docs" / "results.md").read_text(), "results.md")
    assert "<!-- generated" not in page
    pipeline = json.loads((results / "pipeline.json").read_text())
    for row in pipeline["results"]:
        assert f"| {row['recipe']} |" in page
    edge = json.loads((results / "edge.json").read_text())
    assert f"{edge['results']['floor']['seconds_median']:.3f} s" in page
    assert docs_results_plot() is not None


def docs_results_plot():
    import docs_results

    return docs_results.speedup_plot(ROOT / "bench" / "results")


def test_every_marker_in_the_docs_is_known_and_an_unknown_one_fails():
    for page in (ROOT / "docs").rglob("*.md"):
        for name in re.findall(r"^<!-- generated: ([a-z0-9-]+) -->$", page.read_text(), re.M):
            assert name in mkdocs_hooks.GENERATORS, (page, name)
    with pytest.raises(ValueError, match="unknown generated part"):
        mkdocs_hooks.render("<!-- generated: no-such-part -->", "x.md")
