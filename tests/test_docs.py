"""The docs' examples run: every fenced block marked `<!-- run -->` is executed, in nav order, in one fresh
copy of the repository, with the real `toolkit` command; where a block shows output, that output is checked.

Marking (docs/*.md, README.md is checked against them below):

    <!-- run -->                 the next fenced block runs; every command must exit 0
    <!-- run: exit=2 -->         ... every command must exit 2 (error examples)
    <!-- output -->              the next fenced block is what the block run before it prints (checked)

- ```console blocks: lines starting with `$ ` are commands (a trailing backslash continues one); the lines
  under a command are its expected output: each must appear in the command's output, in order, compared with
  runs of spaces collapsed. `...` inside a line matches anything; a line of only `...` stands for lines left
  out.
- ```bash blocks run as one script (`bash -eo pipefail`); ```python blocks with the project's Python.

After the last block nothing may be left outside what .gitignore covers, and nothing new in the repository
root but runs/. `python tests/test_docs.py` prints every block's actual output (for writing docs).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"^<!-- (run|output)(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^```(\w+)\s*$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str
    exit: int = 0
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # console: (command, expected lines)
    expected: list[str] = field(default_factory=list)  # bash/python: the lines of its `<!-- output -->` block

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def nav_pages() -> list[str]:
    """docs pages in mkdocs.yml's nav order."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(items):
        for item in items:
            value = item if isinstance(item, str) else next(iter(item.values()))
            if isinstance(value, list):
                yield from walk(value)
            else:
                yield value

    return list(walk(config["nav"]))


def parse_console(body: str) -> list[tuple[str, list[str]]]:
    commands: list[tuple[str, list[str]]] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + "\n" + lines[i]
            commands.append((cmd, []))
        elif commands:
            commands[-1][1].append(line)
        i += 1
    return commands


def blocks_of(page: str, text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        mark = MARK.match(line)
        if not mark or i + 1 >= len(lines) or not FENCE.match(lines[i + 1]):
            continue
        lang = FENCE.match(lines[i + 1]).group(1)
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        body = "\n".join(lines[i + 2 : end]) + "\n"
        if mark.group(1) == "output":
            assert found and found[-1].lang != "console", f"{page}:{i + 1}: output of no bash/python block"
            found[-1].expected = body.splitlines()
            continue
        options = dict(kv.split("=", 1) for kv in (mark.group(2) or "").split() if "=" in kv)
        block = Block(page, i + 2, lang, body, int(options.get("exit", 0)))
        if lang == "console":
            block.commands = parse_console(body)
        found.append(block)
    return found


def all_blocks() -> list[Block]:
    return [b for page in nav_pages() for b in blocks_of(page, (ROOT / "docs" / page).read_text())]


def _normalize(line: str) -> str:
    return " ".join(ANSI.sub("", line).split())


def missing_lines(expected: list[str], actual: str) -> list[str]:
    """The expected lines not found, in order, in `actual` (`...` matches anything within a line)."""
    got = [_normalize(line) for line in actual.splitlines()]
    pos, missing = 0, []
    for want in expected:
        want = _normalize(want)
        if not want or want == "...":
            continue
        if want.endswith(" ..."):  # "... recall_macro ..." also matches a line that ends at recall_macro
            want = want[:-4] + "..."
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")) + r"\Z")
        hit = next((k for k in range(pos, len(got)) if pattern.match(got[k])), None)
        if hit is None:
            missing.append(want)
        else:
            pos = hit + 1
    return missing


class Workspace:
    """A fresh copy of the repository's tracked files (a git repository, so what examples leave behind
    can be checked against .gitignore) and the environment the examples run in."""

    def __init__(self, path: Path):
        self.path = path
        if not (path / ".git").is_dir():
            self._copy_repository(path)
        self.top = set(os.listdir(path)) - {"runs"}
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TOOLKIT_PROVIDER_STRICT")
        }
        self.env.update(
            PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", COLUMNS="100", NO_COLOR="1"
        )

    @staticmethod
    def _copy_repository(path: Path) -> None:
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split("\0")
        for name in filter(None, tracked):
            src = ROOT / name
            if src.is_file() or src.is_symlink():
                dst = path / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst, follow_symlinks=False)
        git = ["git", "-c", "user.name=docs", "-c", "user.email=docs@localhost"]
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
            subprocess.run([*git, *args], cwd=path, check=True, capture_output=True)

    def execute(self, block: Block) -> list[tuple[str, list[str], subprocess.CompletedProcess]]:
        """Run one block: (command, expected lines, what it did) for each of its commands."""
        steps = block.commands if block.lang == "console" else [(block.body, block.expected)]
        done = []
        for cmd, expected in steps:
            if block.lang == "python":
                args, stdin = [sys.executable, "-"], cmd
            elif block.lang in ("console", "bash"):
                args, stdin = ["bash", "-eo", "pipefail", "-c", cmd], None
            else:
                raise ValueError(f"{block.id}: cannot run a ```{block.lang} block")
            out = self._run(args, stdin)
            done.append((cmd, expected, out))
        return done

    def _run(self, args: list[str], stdin: str | None) -> subprocess.CompletedProcess:
        """One command in its own process group, output to a file: when it ends (or times out) anything it
        left running in the background (a server whose example failed half-way) is killed with it."""
        with tempfile.TemporaryFile("w+") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.path,
                env=self.env,
                text=True,
                start_new_session=True,
            )
            if stdin is not None:
                proc.stdin.write(stdin)
                proc.stdin.close()
            try:
                code = proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                code = -9
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            log.seek(0)
            return subprocess.CompletedProcess(args, code, log.read(), "")

    def run(self, block: Block) -> list[str]:
        """Run one block; returns the problems found (empty when the block did what the docs say)."""
        return problems_of(block, self.execute(block))

    def leftovers(self) -> list[str]:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=self.path,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        new_top = sorted(set(os.listdir(self.path)) - self.top - {"runs"})
        return status + [f"new in the repository root: {name}" for name in new_top]


def problems_of(block: Block, done: list[tuple[str, list[str], subprocess.CompletedProcess]]) -> list[str]:
    problems = []
    for cmd, expected, out in done:
        text = out.stdout + out.stderr
        if out.returncode != block.exit:
            problems.append(f"`{cmd}` exited {out.returncode}, the docs expect {block.exit}:\n{text}")
        missing = missing_lines(expected, text)
        if missing:
            problems.append(
                f"`{cmd}` did not print, in order:\n" + "\n".join(missing) + f"\n--- it printed:\n{text}"
            )
    return problems


BLOCKS = all_blocks()
STATE: dict = {}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("fresh-clone"))


@pytest.mark.slow  # seconds each, a few minutes in all: `make test-slow` runs them (CI too), `make test` does not
@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example_runs_as_documented(block, workspace):
    if STATE.get("failed"):
        pytest.skip(f"an earlier example failed ({STATE['failed']}); the examples run in sequence")
    problems = workspace.run(block)
    if problems:
        STATE["failed"] = block.id
    assert not problems, f"{block.id}:\n" + "\n\n".join(problems)


@pytest.mark.slow
def test_examples_leave_nothing_untracked(workspace):
    if STATE.get("failed") or not BLOCKS:
        pytest.skip("the examples did not all run")
    assert workspace.leftovers() == []


def test_every_page_in_the_nav_has_examples_marked_or_none_to_run():
    pages = nav_pages()
    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(pages) == on_disk, "every page in docs/ is in mkdocs.yml's nav, and only those"
    assert len(BLOCKS) >= 20


def test_readme_tour_commands_are_executed_in_the_docs():
    """The README's tour is the getting-started page's, command for command (that page's run)."""
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## Tour") :]
    tour = tour[: tour.index("\n## ", 1)]
    executed = {cmd for b in BLOCKS for cmd, _ in b.commands} | {
        line.strip() for b in BLOCKS if b.lang == "bash" for line in b.body.splitlines()
    }
    commands = [line[2:] for line in tour.splitlines() if line.startswith("$ ")]
    assert len(commands) >= 5
    assert [c for c in commands if c not in executed] == []


def test_readme_headline_figures_are_the_benchmark_results():
    """The README's small table is typed, so it is held to bench/results/*.json here."""
    import json

    readme = (ROOT / "README.md").read_text()
    results = ROOT / "bench" / "results"
    pipeline = json.loads((results / "pipeline.json").read_text())["results"]
    for batch in ("1", "64"):
        ratios = [r["latency"][batch]["ort_vs_pytorch"] for r in pipeline]
        assert f"{min(ratios):.1f}× to {max(ratios):.1f}× faster" in readme, batch
    cnn = next(r for r in pipeline if r["recipe"] == "cnn-image")
    assert f"{cnn['latency']['64']['quantized_vs_fp32']:.2f}×, no accuracy drop" in readme
    assert cnn["drop"] == 0
    edge = json.loads((results / "edge.json").read_text())["results"]
    assert f"{edge['runner (onnx)']['x_floor_seconds']:.2f}× the bare onnxruntime floor" in readme
    assert f"(PyTorch: {edge['pytorch']['x_floor_seconds']:.1f}×)" in readme
    overhead = json.loads((results / "train_overhead.json").read_text())["recipes"]
    cnn_o, mlp_o = overhead["cnn-image"]["overhead_pct"], overhead["mlp-tabular"]["overhead_pct"]
    assert f"{cnn_o:.1f}% (CNN), {mlp_o:.1f}% (MLP)" in readme


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_missing_lines_matches_in_order_with_wildcards():
    actual = "a  b   c\nexported in 0.4 s\nlast"
    assert missing_lines(["a b c", "exported in ... s", "...", "last"], actual) == []
    assert missing_lines(["last", "a b c"], actual) == ["a b c"]
    assert missing_lines(["exported in 9 s"], actual) == ["exported in 9 s"]
    assert missing_lines(["a b c ...", "last ..."], actual) == []


if __name__ == "__main__":
    # Print what blocks really print, for writing the docs: `python tests/test_docs.py all`, or the ids (page or
    # page:line prefixes) of some blocks, or from:PAGE; DOCS_WORKSPACE=DIR keeps the workspace between calls, so
    # that a page's blocks can run again without the pages before them.
    only = sys.argv[1:] or ["all"]  # "from:PAGE" runs that page's blocks and every one after them
    ws = Workspace(Path(os.environ.get("DOCS_WORKSPACE") or tempfile.mkdtemp()))
    started = False
    for b in BLOCKS:
        started = started or any(o.startswith("from:") and b.id.startswith(o[5:]) for o in only)
        if not started and "all" not in only and not any(b.id.startswith(o) for o in only):
            continue
        print(f"===== {b.id} ({b.lang})", flush=True)
        done = ws.execute(b)
        for cmd, _, r in done:
            print(f"$ {cmd}\n{r.stdout}{r.stderr}[exit {r.returncode}]", flush=True)
        print("problems:", "\n".join(problems_of(b, done)) or "none", flush=True)
    print("leftovers:", ws.leftovers())
