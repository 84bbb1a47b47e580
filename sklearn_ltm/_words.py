"""Word splitting and word ids of the scratch text encoder (private; torch and stdlib only).

Shared by :class:`sklearn_ltm.encoders.ScratchTextEncoder` and the cached query towers of
``sklearn-ltm search`` (:mod:`sklearn_ltm._query_towers`), which tokenize without importing
the encoders package.
"""

from __future__ import annotations

import re

import torch

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def split_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters and digits, inner apostrophes kept).

    Examples
    --------
    >>> split_words("A dog's bark, twice!")
    ['a', "dog's", 'bark', 'twice']
    """
    return _WORD.findall(text.lower())


def word_ids(texts, index, max_length) -> dict:
    """``input_ids`` and ``attention_mask`` (batch, longest caption) of ``texts``.

    ``index`` maps words to ids (``<unk>`` is 1, padding 0); each caption is cut to
    ``max_length`` words, and one without any word becomes one ``<unk>``.

    Examples
    --------
    >>> word_ids(["rain falls softly", "?"], {"rain": 2, "falls": 3}, 2)["input_ids"]
    tensor([[2, 3],
            [1, 0]])
    """
    ids = [[index.get(w, 1) for w in split_words(t)][:max_length] or [1] for t in texts]
    width = max((len(row) for row in ids), default=1)
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}
