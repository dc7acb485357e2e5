"""Every Python code block of README.md runs as printed.

A block whose first line is ``# not run by tests: <reason>`` is skipped with that reason (for blocks that need real
data, a GPU or a long time); every other block runs in a fresh interpreter in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_TAG = "# not run by tests:"


def readme_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of README.md."""
    text = (REPO / "README.md").read_text()
    blocks = re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in blocks]


BLOCKS = readme_blocks()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs_as_printed(line, code, tmp_path):
    first = code.splitlines()[0].strip()
    if first.startswith(SKIP_TAG):
        pytest.skip(first[len(SKIP_TAG):].strip())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"README.md block at line {line} failed:\n{result.stderr[-4000:]}"
