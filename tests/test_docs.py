"""Checks of the documentation sources that do not need a Sphinx build.

- every public name of the package is listed in the API reference (``docs/api.rst``);
- every tutorial the narrative links to exists in ``examples/``;
- the results-page generator (``docs/_ext/results_page.py``) turns benchmark output into
  reStructuredText that parses cleanly, and never fails on missing or odd files.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import sklearn_ltm

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
API = DOCS / "api.rst"

# Modules whose names are implementation details of the estimator, not API.
INTERNAL_MODULES: set[str] = set()


def _load_extension(name):
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documented_names() -> dict[str, set[str]]:
    """Names listed in autosummary tables of api.rst, by their ``currentmodule``."""
    documented: dict[str, set[str]] = {}
    module = None
    in_table = False
    for line in API.read_text(encoding="utf-8").splitlines():
        found = re.match(r"\.\. currentmodule:: (\S+)", line)
        if found:
            module = found.group(1)
            continue
        if line.startswith(".. autosummary::"):
            in_table = True
            continue
        if in_table:
            entry = re.match(r"   ([A-Za-z_][A-Za-z0-9_]*)\s*$", line)
            if entry:
                documented.setdefault(module, set()).add(entry.group(1))
            elif line and not line.startswith("   "):
                in_table = False
    return documented


def _public_modules() -> list[str]:
    names = ["sklearn_ltm"]
    for info in pkgutil.iter_modules(sklearn_ltm.__path__):
        if not info.name.startswith("_") and info.name not in INTERNAL_MODULES:
            names.append(f"sklearn_ltm.{info.name}")
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_every_public_name_is_in_the_api_reference(module_name):
    module = importlib.import_module(module_name)
    public = {n for n in getattr(module, "__all__", []) if n != "__version__"}
    documented = _documented_names()
    # A re-exported name may be documented under any module that holds the same object
    # (the package re-exports names documented where they are defined).
    listed = set()
    for name in public:
        obj = getattr(module, name)
        for other, names in documented.items():
            if name in names and getattr(importlib.import_module(other), name, None) is obj:
                listed.add(name)
    missing = sorted(public - listed)
    assert not missing, f"{module_name}: add {missing} to docs/api.rst"


def test_api_reference_lists_no_stale_names():
    stale = []
    for module_name, names in _documented_names().items():
        module = importlib.import_module(module_name)
        stale += [f"{module_name}.{n}" for n in sorted(names) if not hasattr(module, n)]
    assert not stale, f"docs/api.rst lists names that do not exist: {stale}"


def _tutorial_references():
    refs = set()
    for path in [*DOCS.rglob("*.rst"), *(REPO / "examples").glob("*.py")]:
        if "_build" in path.parts or "auto_examples" in path.parts:
            continue
        refs.update(re.findall(r"sphx_glr_auto_examples_(\w+)\.py", path.read_text("utf-8")))
    return sorted(refs)


@pytest.mark.parametrize("example", _tutorial_references())
def test_linked_tutorials_exist(example):
    assert (REPO / "examples" / f"{example}.py").is_file(), f"no examples/{example}.py"


# ------------------------------------------------------------------ the results page
@pytest.fixture(scope="module")
def results_page():
    return _load_extension("results_page")


MARKDOWN = """# Transport benchmark

Measured with `python benchmarks/bench_transport.py`, see [POT](https://pythonot.github.io).

| B | ours (ms) | POT `sinkhorn` (ms) | ratio |
|---:|---:|---:|:---:|
| 64 | 1.2 | 10.5 | 8.8x |
| 256 | 20.1 | 274.0 | 13.6x |
"""


def test_markdown_table_becomes_a_clean_list_table(results_page):
    rst = results_page.markdown_to_rst(MARKDOWN)
    assert results_page.rst_problems(rst) == ""
    assert ".. list-table::" in rst and ".. rubric:: Transport benchmark" in rst
    assert "``python benchmarks/bench_transport.py``" in rst
    assert "`POT <https://pythonot.github.io>`__" in rst
    # Header plus two rows of four cells each.
    assert rst.count("   * - ") == 3 and rst.count("     - ") == 9


@pytest.mark.parametrize("markdown, expected", [
    ("best_params_ = 3", "best_params\\_ = 3"),             # a trailing _ is a reference
    ("`best_params_`", "``best_params_``"),                  # but not inside code
    ("a | b", "a \\| b"),                                  # |x| is a substitution
    ("| x | y |\n|---|---|\n| - | 1. |", "\\-"),          # a lone "-" cell is no bullet
])
def test_markdown_prose_is_escaped(results_page, markdown, expected):
    rst = results_page.markdown_to_rst(markdown)
    assert expected in rst
    assert results_page.rst_problems(rst) == ""


@pytest.mark.parametrize("text, problem", [
    ("fine text\n", False),
    ("*unclosed emphasis\n", True),
    (".. no-such-directive::\n", True),
])
def test_rst_problems_reports_docutils_warnings(results_page, text, problem):
    assert bool(results_page.rst_problems(text)) is problem


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_results_page_without_results_says_so(results_page, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    rst = results_page.render_results(tmp_path / "benchmarks" / "results",
                                      tmp_path / "benchmarks", docs)
    assert "No benchmark results" in rst
    assert results_page.rst_problems(rst) == ""


def test_results_page_renders_each_file_with_its_command(results_page, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    bench = tmp_path / "benchmarks"
    _write(bench / "results" / "transport.md", MARKDOWN)
    _write(bench / "results" / "transport.json", '{"B": [64, 256]}')
    _write(bench / "results" / "throughput.json", '{"rows": [' + ",".join(["1"] * 100) + "]}")
    _write(bench / "bench_speed.py", 'OUT = "results/throughput.json"\n')
    _write(bench / "results" / "odd.md", "*broken emphasis\n\n| a |\n|---|\n| 1 |\n")
    rst = results_page.render_results(bench / "results", bench, docs)

    sections = re.findall(r"^(.+)\n-+\n", rst, flags=re.M)
    assert sections == ["Odd", "Throughput",
                        "Optimal-transport solvers: m-LTM loss forward and backward"]
    # The markdown table wins over the JSON of the same benchmark.
    assert ".. list-table::" in rst and '"B": [' not in rst
    assert "python benchmarks/bench_transport.py" in rst
    # An unknown result file gets the script that names it.
    assert "python benchmarks/bench_speed.py" in rst
    # Long JSON is cut, and says so.
    assert f"first {results_page.MAX_JSON_LINES} of" in rst
    # Markdown that is not valid reStructuredText is included verbatim instead.
    assert ".. include:: ../benchmarks/results/odd.md\n   :literal:" in rst
    without_include = rst.replace(".. include:: ../benchmarks/results/odd.md\n   :literal:", "")
    assert results_page.rst_problems(without_include) == ""


@pytest.mark.parametrize("stem, script, expected", [
    ("esc50", None, "python benchmarks/reproduce_esc50.py"),
    ("latency", "bench_latency.py", "python benchmarks/bench_latency.py"),
    ("memory", None, "the script in benchmarks/ that writes results/memory.*"),
])
def test_command_for(results_page, tmp_path, stem, script, expected):
    if script:
        _write(tmp_path / script, "")
    assert results_page.command_for(stem, tmp_path) == expected


def test_cli_help_covers_every_command():
    cli_help = _load_extension("cli_help")
    from sklearn_ltm.cli import build_parser

    texts = dict(cli_help.help_texts(build_parser()))
    commands = {"demo", "train", "evaluate", "search", "zero-shot"}
    assert {f"sklearn-ltm {c}" for c in commands} <= set(texts)
    assert all(text.startswith("usage:") for text in texts.values())
    assert "--mass-fraction" in texts["sklearn-ltm train"]
