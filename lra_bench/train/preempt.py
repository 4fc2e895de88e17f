"""Stopping a run cleanly on SIGTERM / SIGINT (what Slurm and Ctrl-C send before a kill).

While a `StopSignals` context is active the first SIGTERM or SIGINT only sets a flag; the
training loop sees it at the next step boundary, writes a checkpoint and raises
`Preempted`, and the command exits with `EXIT_RESUMABLE` (75, EX_TEMPFAIL: "try again"),
so a scheduler or script knows the same command will continue the run. A second SIGINT
more than 2 s later interrupts at once (KeyboardInterrupt), as Ctrl-C usually does.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)
EXIT_RESUMABLE = 75


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint; rerunning the command resumes it."""

    def __init__(self, step: int, signame: str, ckpt_dir: Path):
        super().__init__(f"stopped by {signame} at step {step}; checkpoint saved in {ckpt_dir}; "
                         "rerun the same command to resume")
        self.step, self.signame, self.ckpt_dir = step, signame, ckpt_dir


class StopSignals:
    """Context manager turning SIGTERM / SIGINT into a flag (`requested`, `signame`)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    ECHO_S = 2.0  # a repeat within this many seconds is the same request

    def __init__(self) -> None:
        self.signame: Optional[str] = None
        self._first = 0.0
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signame is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signame is not None:
            # A second Ctrl-C stops at once, unless it is the echo of the first: under torchrun a
            # worker gets the terminal's SIGINT and then torchrun's copy of it.
            if signum == signal.SIGINT and time.monotonic() - self._first > self.ECHO_S:
                raise KeyboardInterrupt
            return
        self._first = time.monotonic()
        self.signame = signal.Signals(signum).name
        log.warning("%s received: saving a checkpoint at the end of this step, then stopping", self.signame)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
