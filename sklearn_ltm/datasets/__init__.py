"""Datasets: AudioCaps, Clotho and ESC-50 loaders and fetchers, and a synthetic corpus.

The loaders read the official layouts and return one row per (clip, caption) pair,
ready for ``LTMRetriever.fit(audio, captions)``. The fetchers download into a cache
(``~/sklearn_ltm_data`` or ``$SKLEARN_LTM_DATA``); nothing here touches the network
unless a ``fetch_*`` function is called. :func:`make_sound_captions` generates a
procedural corpus whose captions need event order and attribute binding.
"""

from ._fetch import (
    CLOTHO_BASE_URL,
    CLOTHO_MD5,
    ESC50_SHA256,
    ESC50_URL,
    fetch_clotho,
    fetch_esc50,
    get_data_home,
)
from ._loaders import (
    AUDIOCAPS_SPLITS,
    CLOTHO_SPLITS,
    DEFAULT_ESC50_TEMPLATE,
    MissingDataError,
    load_audiocaps,
    load_clotho,
    load_esc50,
    normalize_caption,
)
from ._registry import DATASETS, read_dataset, register_dataset
from ._synthetic import make_sound_captions

__all__ = [
    "DATASETS",
    "read_dataset",
    "register_dataset",
    "AUDIOCAPS_SPLITS",
    "CLOTHO_BASE_URL",
    "CLOTHO_MD5",
    "CLOTHO_SPLITS",
    "DEFAULT_ESC50_TEMPLATE",
    "ESC50_SHA256",
    "ESC50_URL",
    "MissingDataError",
    "fetch_clotho",
    "fetch_esc50",
    "get_data_home",
    "load_audiocaps",
    "load_clotho",
    "load_esc50",
    "make_sound_captions",
    "normalize_caption",
]
