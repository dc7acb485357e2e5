"""The scripts in examples/ run at toy size (their --toy flag), as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def test_the_three_examples_are_there():
    assert [p.name for p in EXAMPLES] == [
        "hovernet_batch_mixing.py",
        "synthesize_to_disk_and_train.py",
        "train_unet_real_and_synthetic.py",
    ]


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_at_toy_size(script, tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp_path),  # the examples' temporary folders
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, str(script), "--toy"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Epoch: 1/1" in result.stderr + result.stdout  # it trained
    assert result.stdout.strip().splitlines()[-1].startswith(("trained", "mixed"))
