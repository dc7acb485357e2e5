"""Shared fixtures. Real-data tests read CoNSeP from $CONSEP_DIR and skip when it is unset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def consep_dir() -> Path:
    """Root of a CoNSeP-layout folder (``Train/Images``, ``Train/Labels``) named by $CONSEP_DIR."""
    value = os.environ.get("CONSEP_DIR")
    if not value:
        pytest.skip("CONSEP_DIR is not set: real CoNSeP tests skipped")
    root = Path(value)
    if not (root / "Train" / "Images").is_dir():
        pytest.fail(f"CONSEP_DIR={value} has no Train/Images folder")  # set but wrong is an error, not a skip
    return root


@pytest.fixture(scope="session")
def consep_train(consep_dir):
    """The real Train split in memory (loaded once per session)."""
    from monai_dafgan.data import load_consep

    return load_consep(consep_dir, "Train")


@pytest.fixture(scope="module")
def single_thread():
    """Tiny networks run fastest on one thread; two threads on a busy 2-core machine stall on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
