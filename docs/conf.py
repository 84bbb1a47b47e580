"""Sphinx configuration of the sklearn-ltm documentation.

Build (from the repository root, warnings are errors; the gallery scripts are executed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing here reaches the network, and neither does the built site: intersphinx is off, the
gallery scripts use the embedded synthetic corpus only, and MathJax is served from the site
itself (copied from the installed package django-static-mathjax, see ``docs`` in
pyproject.toml) instead of a CDN.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(DOCS / "_ext"))

import torch  # noqa: E402

import sklearn_ltm  # noqa: E402

# -- Project -----------------------------------------------------------------------------------
project = "sklearn-ltm"
author = "sklearn-ltm developers"
copyright = "sklearn-ltm developers, BSD-3-Clause"
release = sklearn_ltm.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "results_page",
    "cli_help",
]
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_templates",
    "_ext",
    "Thumbs.db",
    ".DS_Store",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "sg_execution_times.rst",
    "auto_examples/sg_execution_times.rst",
]
root_doc = "index"
default_role = "literal"
nitpicky = False
# Warnings that do not point at a problem of this project's sources.
suppress_warnings = ["config.cache"]

# -- autodoc / autosummary / numpydoc ----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# -- sphinx-gallery ----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(REPO / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "sg_order.TutorialOrder",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("sklearn_ltm",),
    "reference_url": {"sklearn_ltm": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    # its page loads jQuery and DataTables from CDNs: the built site must work offline
    "write_computation_times": False,
}

# The gallery trains small models; one thread is the fastest on a shared or small machine
# (several threads contend for two cores and spin), and keeps the timings reproducible.
torch.set_num_threads(1)

# Library deprecation notices printed while the gallery runs are noise in the rendered pages.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchaudio.*")
warnings.filterwarnings("ignore", message=r".*Matplotlib is currently using agg.*")
os.environ.setdefault("MPLBACKEND", "agg")

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-ltm {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sg_download_links", "sg_launcher_links"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# Pages with no sub-pages get no (empty) section-navigation column: their content is wider.
html_sidebars = {"index": [], "results": [], "developer": [], "cli": []}
html_context = {"default_mode": "light"}

# -- Maths, offline ----------------------------------------------------------------------------
# MathJax 3 (SVG output: no web fonts to fetch) from the site's own _static folder.
MATHJAX_FILES = ("tex-svg.js", "input/tex/extensions", "ui/menu.js", "a11y")
mathjax_path = "mathjax/tex-svg.js"
mathjax3_config = {"options": {"enableMenu": False}}


def mathjax_source() -> Path:
    """The ``es5`` folder of the MathJax copy in django-static-mathjax (import name mathjax)."""
    spec = importlib.util.find_spec("mathjax")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(folder) / "static" / "mathjax" / "es5"
        if (es5 / "tex-svg.js").is_file():
            return es5
    raise RuntimeError(
        "MathJax for the offline documentation is missing: pip install -e '.[docs]' "
        "(it comes from the django-static-mathjax package)."
    )


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for name in MATHJAX_FILES:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, dirs_exist_ok=True)
        elif (source / name).is_file():
            target.joinpath(name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)


def _unlink_emails(app, doctree):
    """Undo docutils' e-mail recognition: "R@10" and "mAP@10" are metrics, not addresses."""
    from docutils import nodes

    for ref in list(doctree.findall(nodes.reference)):
        if ref.get("refuri", "").startswith("mailto:"):
            ref.replace_self(nodes.Text(ref.astext()))


def setup(app):
    """Project hooks: offline MathJax and no mailto: links."""
    mathjax_source()  # fail early, before the gallery runs, when MathJax is not installed
    app.connect("build-finished", _copy_mathjax)
    app.connect("doctree-read", _unlink_emails)

