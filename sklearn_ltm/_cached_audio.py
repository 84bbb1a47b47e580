"""The file-cached retriever that ``sklearn-ltm evaluate`` and ``zero-shot`` embed through (private).

Kept out of :mod:`sklearn_ltm.cli` so that the command starts without scikit-learn.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator

__all__ = ["CachedAudioRetriever"]


class CachedAudioRetriever(BaseEstimator):
    """A fitted retriever whose file embeddings go through the shared embedding cache.

    ``transform`` of audio file paths reads (and fills) the :class:`~sklearn_ltm.search.SearchIndex`
    file cache in ``cache_dir``; anything else, and ``embed_text``, goes to the retriever.

    Parameters
    ----------
    retriever : LTMRetriever
        Fitted.
    cache_dir : path-like
        The cache folder (see :func:`sklearn_ltm.cli.embedding_cache_dir`).
    verbose : int, default=0
        Progress of the embedding on stderr.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ltm import LTMRetriever
    >>> rng = np.random.default_rng(0)
    >>> model = LTMRetriever(embedding_dim=4, max_epochs=1, validation_fraction=0.0,
    ...                      random_state=0).fit(rng.normal(size=(8, 6)), rng.normal(size=(8, 5)))
    >>> cached = CachedAudioRetriever(model, "unused-for-features")
    >>> cached.transform(np.ones((2, 6))).shape
    (2, 4)
    """

    def __init__(self, retriever, cache_dir, verbose=0):
        self.retriever = retriever
        self.cache_dir = cache_dir
        self.verbose = verbose

    def __sklearn_is_fitted__(self):
        return True  # a wrapper of a fitted retriever

    def fit(self, X, y=None):
        """Not available: the retriever is already fitted (train it with ``sklearn-ltm train``).

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError("CachedAudioRetriever wraps a fitted retriever; it is not trained.")

    def transform(self, X):
        """Audio embeddings, from the cache for files already embedded with this model.

        Parameters
        ----------
        X : sequence of path or array-like
            Audio files (cached), or whatever the retriever's ``transform`` takes.

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim)
        """
        from .search import SearchIndex, _is_paths

        if not _is_paths(X):
            return self.retriever.transform(X)
        paths = [str(p) for p in X]
        index = SearchIndex(self.retriever, cache_dir=self.cache_dir, verbose=self.verbose)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            index.add(paths)
        if len(index) != len(paths):
            why = next((str(w.message) for w in caught), "")
            raise ValueError(f"{len(paths) - len(index)} of {len(paths)} audio files could not "
                             f"be embedded: {why.rstrip('.')}.")
        for w in caught:  # e.g. an unwritable cache: said once, the run goes on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return np.asarray(index.embeddings_)

    def embed_text(self, y):
        """Caption embeddings of the retriever.

        Parameters
        ----------
        y : sequence of str or array-like

        Returns
        -------
        ndarray of shape (n_samples, embedding_dim)
        """
        return self.retriever.embed_text(y)
