"""The developer guide's recipes, run as written: each is one registration plus its test.

The code blocks of ``docs/developer.rst`` that start with ``# recipe:`` run in order in one
namespace (a later recipe may use an earlier one's registration), then every ``test_``
function a block defines is called.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "developer.rst"
RECIPES = ("add a loss", "add an encoder", "add a dataset", "add a callback")


def _recipes() -> dict[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    out = {}
    for block in blocks:
        code = "\n".join(line[3:] for line in block.splitlines())
        first = code.strip().splitlines()[0]
        if first.startswith("# recipe:"):
            out[first.removeprefix("# recipe:").strip()] = code
    return out


def test_the_guide_has_every_recipe():
    assert list(_recipes()) == list(RECIPES)


@pytest.fixture(scope="module")
def namespace():
    ns: dict = {}
    yield ns
    from sklearn_ltm.components import AUDIO_ENCODERS, LOSSES
    from sklearn_ltm.datasets import DATASETS

    LOSSES.unregister("margin-ranking")
    AUDIO_ENCODERS.unregister("band-energies")
    DATASETS.unregister("named-files")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_and_its_test_passes(name, namespace, tmp_path):
    before = set(namespace)
    exec(compile(_recipes()[name], f"developer.rst ({name})", "exec"), namespace)  # noqa: S102
    tests = [v for k, v in namespace.items() if k.startswith("test_") and k not in before]
    assert tests, f"the recipe {name!r} defines no test"
    for test in tests:
        kwargs = {"workdir": tmp_path} if "workdir" in inspect.signature(test).parameters else {}
        test(**kwargs)
