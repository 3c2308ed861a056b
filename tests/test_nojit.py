"""The model's tests also pass with the JIT disabled (numba functions run as Python).

This is how the kernels' lines are covered and how a numba bug would be told apart
from a model bug: the same tests, once compiled (the rest of the suite) and once not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_model_tests_pass_without_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "HYPOTHESIS_PROFILE": "nojit"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_timelines.py", "tests/test_published_figures.py",
         "tests/test_kernel_reference.py::test_kernel_equals_reference",
         "tests/test_chunking.py", "tests/test_hist.py", "tests/test_lanes.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
