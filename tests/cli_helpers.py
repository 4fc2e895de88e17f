"""Run `python -m lra_bench` as a user does, in a subprocess writing only under a test's tmp_path."""
from __future__ import annotations

import os
import subprocess
import sys


def cli(tmp_path, *args, timeout=300):
    """`python -m lra_bench *args` run in tmp_path, with paths.root and paths.cache under it."""
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "lra_bench", *args, f"paths.root={tmp_path / 'out'}",
                           f"paths.cache={tmp_path / 'cache'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)
