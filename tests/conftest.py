"""Shared fixtures: the real data folder, and one torch thread per test."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"



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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only on the project machines)")
    return SHARED_DATA
