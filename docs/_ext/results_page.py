"""Sphinx extension: fill the results page from whatever benchmark results exist.

``docs/results.rst`` holds the narrative. At build time this extension appends one section per
result file found in ``benchmarks/results/`` (``*.md`` tables, or ``*.json`` when a benchmark
wrote no table), each with the command that made it. A missing file is never an error: a
section only appears for the files that exist, and a note says when there are none yet.

Markdown pipe tables are turned into reStructuredText ``list-table`` directives; the converted
text is parsed with docutils first and, should it raise any warning, the file is shown
verbatim instead, so a benchmark's free-form output can never break a ``-W`` build. A JSON
file without a Markdown twin is shown as tables too (:func:`json_to_rst`): each list of
records becomes a table with one column per field, and the plain values of an object a
two-column table, each under the path of keys that leads to it.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

RESULTS_DOCNAME = "results"
MAX_TABLE_ROWS = 60

# Benchmarks whose script name does not follow ``bench_<stem>.py``.
KNOWN_COMMANDS = {
    "esc50": "python benchmarks/reproduce_esc50.py",
    "transport": "python benchmarks/bench_transport.py",
    "encoders": "python benchmarks/bench_encoders.py",
}

_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def command_for(stem: str, benchmarks_dir: Path) -> str:
    """The command that writes ``benchmarks/results/<stem>.*``.

    Parameters
    ----------
    stem : str
        Result file name without its suffix, e.g. ``"transport"``.
    benchmarks_dir : pathlib.Path
        The ``benchmarks/`` folder, scanned for a script that names the result file.

    Returns
    -------
    str
        A shell command run from the repository root.
    """
    if stem in KNOWN_COMMANDS:
        return KNOWN_COMMANDS[stem]
    for candidate in (f"bench_{stem}.py", f"reproduce_{stem}.py", f"{stem}.py"):
        if (benchmarks_dir / candidate).is_file():
            return f"python benchmarks/{candidate}"
    for script in sorted(benchmarks_dir.glob("*.py")):
        text = script.read_text(encoding="utf-8", errors="replace")
        if f"{stem}.md" in text or f"{stem}.json" in text or f'"{stem}"' in text:
            return f"python benchmarks/{script.name}"
    return f"the script in benchmarks/ that writes results/{stem}.*"


_LIST_MARKER = re.compile(r"^([-*+]|\d+[.)])(\s|$)")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=[^\w]|$)")


def _escape(text: str) -> str:
    """Escape what reStructuredText would read as markup in plain markdown prose."""
    text = _TRAILING_UNDERSCORE.sub(r"\\_", text)     # ``name_`` is a reference in rst
    return text.replace("|", "\\|")                    # ``|x|`` is a substitution


def _inline(text: str) -> str:
    """Markdown inline code and links to reStructuredText; other text escaped."""
    out = []
    for i, part in enumerate(re.split(r"((?<!`)`[^`]+`(?!`))", text)):
        if i % 2:                                        # a code span
            out.append(f"`{part}`")
        else:
            links = re.split(r"(\[[^\]]+\]\([^)\s]+\))", part)
            out.append("".join(_MD_LINK.sub(r"`\1 <\2>`__", chunk) if j % 2 else _escape(chunk)
                               for j, chunk in enumerate(links)))
    return "".join(out)


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def _table_to_rst(header: list[str], rows: list[list[str]]) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        row = (row + [""] * len(header))[: len(header)]
        for j, cell in enumerate(row):
            text = _inline(cell) or ".."
            if _LIST_MARKER.match(text):                 # "-" alone would be a bullet list
                text = "\\" + text
            out.append(f"   {'*' if j == 0 else ' '} - {text}")
    out.append("")
    return out


def markdown_to_rst(markdown: str) -> str:
    """Convert the small markdown subset benchmarks write (headings, text, pipe tables).

    Headings become rubrics (so the page's own section levels are never disturbed), fenced
    code blocks become literal blocks, pipe tables become ``list-table`` directives and other
    lines are kept as paragraphs with inline code and links converted.

    Parameters
    ----------
    markdown : str

    Returns
    -------
    str
        reStructuredText.
    """
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i])
                i += 1
            i += 1
            out += ["::", ""] + [f"   {b}" for b in block] + [""]
            continue
        heading = _HEADING.match(line)
        if heading:
            out += [f".. rubric:: {_inline(heading.group(2))}", ""]
            i += 1
            continue
        if "|" in stripped and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
            header = _split_row(line)
            rows = []
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(_split_row(lines[i]))
                i += 1
            out += [""] + _table_to_rst(header, rows)
            continue
        out.append(_inline(line.rstrip()))
        i += 1
    return "\n".join(out).strip() + "\n"


def rst_problems(text: str) -> str:
    """Warnings docutils reports when parsing ``text`` (empty when it is clean).

    Parameters
    ----------
    text : str
        reStructuredText.

    Returns
    -------
    str
    """
    from docutils.core import publish_doctree

    stream = io.StringIO()
    try:
        publish_doctree(text, settings_overrides={
            "report_level": 2, "halt_level": 5, "warning_stream": stream,
            "file_insertion_enabled": False, "raw_enabled": False,
        })
    except Exception as exc:  # pragma: no cover - docutils raises only past halt_level
        return f"{type(exc).__name__}: {exc}"
    return stream.getvalue()


def _is_plain(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _fmt(value) -> str:
    """A JSON value as a table cell: floats to 4 significant digits, lists joined."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(_is_plain(v) for v in value):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def json_to_rst(data) -> str:
    """reStructuredText tables for a benchmark's JSON results.

    Every list of objects becomes a ``list-table`` with one column per (flattened) field;
    the plain values of each object become a two-column table; each table is headed by the
    path of keys leading to it. At most :data:`MAX_TABLE_ROWS` rows per table are shown.

    Parameters
    ----------
    data : object
        Parsed JSON.

    Returns
    -------
    str
        reStructuredText.
    """
    out: list[str] = []

    def rubric(path):
        if path:
            out.extend([f".. rubric:: {_inline(' / '.join(map(str, path)))}", ""])

    def table(header, rows):
        shown = rows[:MAX_TABLE_ROWS]
        out.extend(_table_to_rst(header, shown))
        if len(rows) > len(shown):
            out.extend([f"(first {len(shown)} of {len(rows)} rows)", ""])

    def walk(node, path):
        if isinstance(node, dict):
            plain = {k: v for k, v in node.items()
                     if _is_plain(v) or (isinstance(v, list) and all(_is_plain(x) for x in v))}
            if plain:
                rubric(path)
                table(["field", "value"], [[str(k), _fmt(v)] for k, v in plain.items()])
            for key, value in node.items():
                if key not in plain:
                    walk(value, [*path, key])
        elif isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
            records = [_flatten(x) for x in node]
            columns = list(dict.fromkeys(k for r in records for k in r))
            rubric(path)
            table(columns, [[_fmt(r.get(c, "")) for c in columns] for r in records])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, [*path, i])
        else:
            rubric(path)
            table(["value"], [[_fmt(node)]])

    walk(data, [])
    return "\n".join(out) + "\n"


def _title(stem: str) -> str:
    return {
        "esc50": "Zero-shot classification on ESC-50",
        "transport": "Optimal-transport solvers: m-LTM loss forward and backward",
        "encoders": "Encoder throughput",
        "noise": "Noisy correspondences on planted features",
        "fit": "Training speed in feature mode",
        "gpu": "Training throughput on a GPU",
        "cli_startup": "Start-up of a cached search",
        "large_batch": "Exact large batches: memory of the two-pass step",
    }.get(stem, stem.replace("_", " ").capitalize())


def render_results(results_dir: Path, benchmarks_dir: Path, docs_dir: Path) -> str:
    """reStructuredText sections for every result file in ``results_dir``.

    Parameters
    ----------
    results_dir : pathlib.Path
        ``benchmarks/results``; may be missing.
    benchmarks_dir : pathlib.Path
        ``benchmarks``, to find the command that made each file.
    docs_dir : pathlib.Path
        The Sphinx source folder, for relative ``include`` paths.

    Returns
    -------
    str
    """
    files = sorted(results_dir.glob("*.md")) + sorted(results_dir.glob("*.json")) \
        if results_dir.is_dir() else []
    stems: dict[str, dict[str, Path]] = {}
    for path in files:
        stems.setdefault(path.stem, {})[path.suffix] = path
    if not stems:
        return (
            "\n.. note::\n\n   No benchmark results have been written in this checkout yet. "
            "Run the commands above from the repository root, then rebuild the documentation.\n"
        )
    out = []
    for stem in sorted(stems):
        found = stems[stem]
        title = _title(stem)
        out += ["", title, "-" * len(title), "",
                "Made by (from the repository root)::", "",
                f"   {command_for(stem, benchmarks_dir)}", ""]
        if ".md" in found:
            md = found[".md"]
            shown = _repo_relative(md, docs_dir)
            converted = markdown_to_rst(md.read_text(encoding="utf-8", errors="replace"))
            if not rst_problems(converted):
                out += [f"From ``{shown}``:", "", converted]
            else:
                out += [f"``{shown}``, verbatim:", "", f".. include:: ../{shown}",
                        "   :literal:", ""]
        else:
            js = found[".json"]
            shown = _repo_relative(js, docs_dir)
            text = js.read_text(encoding="utf-8", errors="replace")
            try:
                converted = json_to_rst(json.loads(text))
            except ValueError:
                converted = None
            if converted is not None and not rst_problems(converted):
                out += [f"From ``{shown}``:", "", converted]
            else:
                out += [f"``{shown}``, verbatim:", "", f".. include:: ../{shown}",
                        "   :literal:", ""]
    return "\n".join(out) + "\n"


def _repo_relative(path: Path, docs_dir: Path) -> str:
    return path.resolve().relative_to(docs_dir.resolve().parent).as_posix()


def _paths(app):
    docs_dir = Path(app.srcdir)
    repo = docs_dir.parent
    return repo / "benchmarks" / "results", repo / "benchmarks", docs_dir


def _on_source_read(app, docname, source):
    if docname == RESULTS_DOCNAME:
        source[0] += render_results(*_paths(app))


def _always_reread(app, env, added, changed, removed):
    # Result files live outside the Sphinx source tree: re-read the page on every build.
    return [RESULTS_DOCNAME] if RESULTS_DOCNAME in env.found_docs else []


def setup(app):
    """Register the results-page hooks."""
    app.connect("source-read", _on_source_read)
    app.connect("env-get-outdated", _always_reread)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
