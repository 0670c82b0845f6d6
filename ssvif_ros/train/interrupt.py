"""Ctrl-C during training: the first stops at the next safe point with the state saved, the second at once.

Why: Python's default turns SIGINT into a ``KeyboardInterrupt`` wherever the main thread happens to be
(mid-step, mid-save, inside a loader worker), which ends a run with a traceback and no word on where it can
be resumed from. Here the first SIGINT only sets a flag that the trainer polls after every step; the
trainer then saves a state and raises :class:`TrainingInterrupted`, and the front says how to resume. The
second SIGINT calls the front's ``on_second`` (print the resume hint, exit at once): checkpoint writes are
atomic, so stopping anywhere leaves the last committed state intact.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any


class TrainingInterrupted(Exception):
    """Training stopped on request at a safe point (the state of ``epoch``/``step`` saved in ``run_dir``)."""

    def __init__(self, run_dir: Path, epoch: int, step: int, saved: bool) -> None:
        self.run_dir, self.epoch, self.step, self.saved = run_dir, epoch, step, saved
        where = f"epoch {epoch}, step {step}" if saved else "before the first training step"
        super().__init__(f"training interrupted at {where}")


class StopOnInterrupt:
    """Context manager: the first SIGINT sets :attr:`requested` (and prints ``notice``), the next calls
    ``on_second``, which should not return (it may exit the process).

    Installs nothing outside the main thread or where SIGINT is ignored (``nohup``, background jobs): those
    keep their behaviour. Forked loader workers inherit the handler; it ignores signals in them.
    """

    def __init__(self, on_second: Callable[[], Any], notice: str | None = None) -> None:
        self.on_second, self.notice = on_second, notice
        self.requested = False
        self._pid = os.getpid()
        self._previous: Any = None

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the main process decides
            return
        if self.requested:
            self.on_second()
            return
        self.requested = True
        if self.notice:
            write_line(self.notice)


def write_line(text: str) -> None:
    """``text`` to stderr from a signal handler: straight to the file descriptor, since the handler may run
    in the middle of another write to ``sys.stderr`` (a reentrant call there raises)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stream (tests): no descriptor
        print(text, file=sys.stderr, flush=True)
        return
    os.write(fd, (text + "\n").encode())


def ignore_sigint_in_worker(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C reaches the whole process group, but only the main process
    may act on it (a worker that dies of it breaks the next batch instead of stopping the run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
