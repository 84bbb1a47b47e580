"""Sphinx extension: the ``sklearn-ltm-help`` directive prints the command's ``--help`` texts.

The help is rendered from :func:`sklearn_ltm.cli.build_parser` at build time, so the page never
drifts from the code.
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from docutils.parsers.rst import Directive

HELP_WIDTH = 88


def help_texts(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """``(command, help text)`` for the main parser and each sub-command.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    list of (str, str)
    """
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    try:
        out = [(parser.prog, parser.format_help())]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append((f"{parser.prog} {name}", sub.format_help()))
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return out


class SklearnLtmHelp(Directive):
    """One section per command, with its ``--help`` text as a literal block."""

    has_content = False

    def run(self):
        from sklearn_ltm.cli import build_parser

        env = self.state.document.settings.env
        result = []
        for command, text in help_texts(build_parser()):
            section = nodes.section(ids=[nodes.make_id(f"cli-{command}")])
            section += nodes.title(text=command)
            section += nodes.literal_block(text, text, language="text")
            env.note_dependency(__file__)
            result.append(section)
        return result


def setup(app):
    """Register the directive."""
    app.add_directive("sklearn-ltm-help", SklearnLtmHelp)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
