"""Fixtures for every test and doctest (``tests/`` and the modules' examples)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test runs with one torch thread (restored afterwards).

    The tests' tensors are small; on a shared 2-core machine more threads make tiny ops
    many times slower, and one thread makes timings and float sums reproducible.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
