"""One-line descriptions of parameters, read from numpydoc docstrings.

The command line takes the help of each option from the docstring of the estimator or
component the option sets, so the two cannot drift apart.
"""

from __future__ import annotations

import inspect
import re

__all__ = ["parameter_help", "first_sentence", "plain_text"]

_HEADER = re.compile(r"^(?P<names>[A-Za-z_*][\w*]*(?:\s*,\s*[A-Za-z_*][\w*]*)*)\s*(?::.*)?$")
_ROLE = re.compile(r":[\w:.+-]+:`~?(?P<body>[^`]+)`")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "al.")
_AS_IN = re.compile(r"^As in :(?:class|func):`~?(?P<target>[\w.]+)`")


def plain_text(text: str) -> str:
    """``text`` with its reStructuredText markup turned into plain text.

    Parameters
    ----------
    text : str

    Returns
    -------
    str

    Examples
    --------
    >>> plain_text("``None``: see :class:`~sklearn_ltm.components.PANNs` and `x`")
    'None: see PANNs and x'
    """

    def role(match):
        body = match.group("body")
        if "<" in body and body.endswith(">"):  # :ref:`title <target>`
            return body[: body.index("<")].strip()
        return body.rsplit(".", 1)[-1] if match.group(0).split("`")[1].startswith("~") else body

    text = _ROLE.sub(role, text)
    return re.sub(r"`{1,2}([^`]*)`{1,2}", r"\1", text)


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when it has one), whitespace collapsed.

    Parameters
    ----------
    text : str

    Returns
    -------
    str

    Examples
    --------
    >>> first_sentence("Size of the space. Larger is slower.")
    'Size of the space.'
    >>> first_sentence("Extra callbacks (e.g. Checkpoint. Any object), or None. More.")
    'Extra callbacks (e.g. Checkpoint. Any object), or None.'
    """
    text = " ".join(text.split())
    depth = 0
    for i, char in enumerate(text):
        depth += (char in "([{") - (char in ")]}")
        if (char in ".!?" and depth <= 0 and i + 1 < len(text) and text[i + 1] == " "
                and not text[: i + 1].endswith(_ABBREVIATIONS)):
            return text[: i + 1]
    return text


def _sections(doc: str) -> dict[str, list[str]]:
    lines = inspect.cleandoc(doc).splitlines()
    sections, name = {}, None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()) and line.strip():
            name = line.strip()
            sections[name] = []
        elif name is not None and not re.fullmatch(r"-{3,}", line.strip()):
            sections[name].append(line)
    return sections


def _raw_parameter_docs(obj) -> dict[str, tuple[str, str]]:
    """``{name: (type line, description)}`` of the Parameters section of ``obj``'s doc."""
    doc = inspect.getdoc(obj) or ""
    out: dict[str, tuple[str, str]] = {}
    names, spec, body = None, "", []

    def flush():
        if names:
            for n in names:
                out.setdefault(n, (spec, " ".join(body)))

    for line in _sections(doc).get("Parameters", []):
        if line and not line[0].isspace():
            match = _HEADER.match(line.strip())
            if match is None:
                continue
            flush()
            names = [n.strip() for n in match.group("names").split(",")]
            spec = line.split(":", 1)[1].strip() if ":" in line else ""
            body = []
        elif names is not None and line.strip():
            body.append(line.strip())
    flush()
    return out


def parameter_help(obj, *, _seen=None) -> dict[str, str]:
    """The first sentence of each parameter's description in ``obj``'s numpydoc docstring.

    A description that starts with ``As in :class:`Other``` is looked up in ``Other``
    (a class of the same module or of ``sklearn_ltm``), so shared parameters are documented
    once. Markup is turned into plain text.

    Parameters
    ----------
    obj : class or function
        Documented with a numpydoc ``Parameters`` section.

    Returns
    -------
    dict of str to str
        Parameter name to its one-sentence description; parameters documented with a type
        only are left out.

    Examples
    --------
    >>> from sklearn_ltm import LTMRetriever
    >>> parameter_help(LTMRetriever)["embedding_dim"]
    'Size of the shared embedding space.'
    """
    seen = {obj} | (_seen or set())  # the classes on the way here (no cycles)
    out = {}
    for name, (_, description) in _raw_parameter_docs(obj).items():
        match = _AS_IN.match(description)
        if match is not None:
            other = _resolve(obj, match.group("target"))
            if other is not None and other not in seen:
                inherited = parameter_help(other, _seen=seen).get(name)
                if inherited:
                    rest = plain_text(description[match.end():].strip())
                    if f"{name}=" in rest:  # a note on this very parameter
                        inherited = f"{inherited.rstrip('.')} {rest}"
                    out[name] = inherited
                    continue
        if description:
            out[name] = first_sentence(plain_text(description))
    return out


def _resolve(obj, target: str):
    import importlib

    module = inspect.getmodule(obj)
    head, _, tail = target.rpartition(".")
    candidates = [(module, target)] if not head else []
    if head:
        try:
            candidates.append((importlib.import_module(head), tail))
        except ImportError:
            pass
    import sklearn_ltm

    candidates.append((sklearn_ltm, tail or target))
    for mod, name in candidates:
        found = getattr(mod, name, None)
        if found is not None:
            return found
    return None
