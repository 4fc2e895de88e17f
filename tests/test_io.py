"""lra_bench.io: `run_command` stops quietly when the reader of stdout goes away."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lra_bench.io import run_command

ROOT = Path(__file__).resolve().parents[1]


def test_run_command_returns_the_status_and_flushes(capsys):
    assert run_command(lambda: print("done") or 3) == 3
    assert capsys.readouterr().out == "done\n"


def _with_closed_stdout(code: str) -> subprocess.CompletedProcess:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)


def test_closed_stdout_exits_1_without_a_traceback():
    # a short line stays in the buffer until the flush at the end; a long one fails in print itself
    for text in ("'short'", "'x' * 100_000"):
        r = _with_closed_stdout("import sys; from lra_bench.io import run_command; "
                                f"sys.exit(run_command(lambda: print({text}) or 0))")
        assert r.returncode == 1, r.stderr
        assert r.stderr == ""


def test_without_run_command_python_prints_a_traceback():
    """The control: what users saw before (the test above would pass vacuously otherwise)."""
    r = _with_closed_stdout("print('x' * 100_000)")
    assert r.returncode != 0 and "BrokenPipeError" in r.stderr
