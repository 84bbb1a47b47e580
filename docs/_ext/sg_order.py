"""Order of the gallery tutorials: the listed ones first, in reading order, then the rest."""

from __future__ import annotations

import os

READING_ORDER = (
    "plot_quickstart.py",
    "plot_text_search.py",
    "plot_zero_shot.py",
    "plot_noise_robustness.py",
    "plot_grid_search.py",
)


class TutorialOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``.

    Parameters
    ----------
    src_dir : str
        The gallery folder (unused: the order is by file name).
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = os.path.basename(filename)
        if name in READING_ORDER:
            return (0, READING_ORDER.index(name), name)
        return (1, 0, name)

    def __repr__(self):
        return f"<{type(self).__name__}>"
