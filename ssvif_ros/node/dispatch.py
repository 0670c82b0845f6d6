"""Newest-first hand-over of pairs from the subscription callbacks to the code that fuses them.

Why: a model slower than the cameras must not build a queue (the node fuses the newest pair and counts the
ones it skipped), and it must not block the executor either (diagnostics and the lost-input watch keep
running). A worker thread gives both. But for a fast model (a GPU engine, the benchmark's passthrough) the
hand-off to the thread is a measurable share of the node's own latency: the worker waits for the
executor thread to give up the GIL after the callback (0.29 ms p50 measured in the node at 640×480,
``bench/node_latency.py``). :class:`NewestDispatcher` therefore runs a job **inline**, in the callback's
thread, when nothing is in flight and recent jobs took less than ``inline_max_s``; otherwise it leaves it
in a one-slot mailbox for the worker.

Guarantees (tested in ``test/test_dispatch.py``): jobs run one at a time (``process`` need not be
thread-safe); a job never runs after a newer one (a job is only run inline when no older job waits);
a job replaced before it ran is counted as skipped; ``process`` exceptions go to ``on_error`` and never
reach the caller or stop the worker. ROS-free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LatestMailbox", "NewestDispatcher"]


class LatestMailbox:
    """Single-slot hand-over between callbacks and the worker: :meth:`put` replaces an untaken item
    (returns True then, so the caller counts a skip), :meth:`take` waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None

    def put(self, item: Any) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def take_nowait(self) -> Any:
        """The item, or None at once when there is none."""
        with self._cond:
            item, self._item = self._item, None
            return item

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for an item to be there (without taking it); True when one is."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            return self._item is not None

    def empty(self) -> bool:
        with self._cond:
            return self._item is None


class NewestDispatcher:
    """``submit(job) -> skipped`` runs ``process(job)`` inline or on a worker thread, newest job first.

    ``inline_max_s``: a job runs inline when no job is running or waiting and both the last job's duration
    and the moving average of the recent ones (EMA, weight ``1/8`` per job) are below it, so one slow job
    (a model that just started having subscribers) sends the next to the worker at once; ``0`` disables
    inline runs (every job goes to the worker). The first job always goes to the worker (no duration known
    yet).
    ``on_error(exc)`` receives what ``process`` raised. Call :meth:`close` to stop the worker.
    """

    def __init__(
        self,
        process: Callable[[Any], None],
        inline_max_s: float = 0.0,
        on_error: Callable[[BaseException], None] | None = None,
        name: str = "dispatch.worker",
    ) -> None:
        if not inline_max_s >= 0.0:
            raise ValueError(f"inline_max_s must be >= 0, got {inline_max_s!r}")
        self._process = process
        self.inline_max_s = float(inline_max_s)
        self._on_error = on_error
        self._mailbox = LatestMailbox()
        self._busy = threading.Lock()  # held while a job runs, inline or on the worker
        self._mean_s: float | None = None
        self._last_s: float | None = None
        self.inline_jobs = 0
        self.worker_jobs = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    @property
    def mean_job_s(self) -> float | None:
        """Moving average of the jobs' durations, seconds (None before the first job ended)."""
        return self._mean_s

    def submit(self, job: Any) -> bool:
        """Hand ``job`` over; True when it replaced a job that had not run yet (count it as skipped)."""
        fast = (
            self._mean_s is not None
            and self._last_s is not None
            and max(self._mean_s, self._last_s) < self.inline_max_s
        )
        if fast and self._busy.acquire(blocking=False):
            try:
                if self._mailbox.empty():  # nothing older waits: running it now keeps the order
                    self.inline_jobs += 1
                    self._run(job)
                    return False
            finally:
                self._busy.release()
        return self._mailbox.put(job)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (the job it is running finishes first)."""
        self._stop.set()
        self._worker.join(timeout=timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._mailbox.wait(timeout=0.1):
                continue
            with self._busy:  # taken under the lock: an inline job may have run meanwhile; take the newest
                job = self._mailbox.take_nowait()
                if job is not None:
                    self.worker_jobs += 1
                    self._run(job)

    def _run(self, job: Any) -> None:
        started = time.perf_counter()
        try:
            self._process(job)
        except Exception as err:  # keep running: one bad frame must not stop the robot's pipeline
            if self._on_error is not None:
                self._on_error(err)
        elapsed = time.perf_counter() - started
        self._last_s = elapsed
        self._mean_s = elapsed if self._mean_s is None else self._mean_s + (elapsed - self._mean_s) / 8.0
