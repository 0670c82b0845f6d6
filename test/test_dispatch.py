"""NewestDispatcher: inline for fast jobs, worker for slow ones, one at a time, never out of order."""

from __future__ import annotations

import threading
import time

import pytest

from ssvif_ros.node.dispatch import LatestMailbox, NewestDispatcher


def test_latest_mailbox_keeps_only_the_newest_item():
    box = LatestMailbox()
    assert box.put(1) is False
    assert box.put(2) is True  # 1 was skipped
    assert box.wait(0.0) is True and not box.empty()
    assert box.take(0.0) == 2
    assert box.take(0.01) is None and box.take_nowait() is None and box.wait(0.0) is False


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Recorder:
    """process() that records (job, thread) and can be held at a gate."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.done: list[tuple[int, str]] = []
        self.sleep_s = sleep_s
        self.gate = threading.Event()
        self.gate.set()
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def __call__(self, job: int) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.gate.wait(5.0)
        time.sleep(self.sleep_s)
        with self._lock:
            self.running -= 1
        self.done.append((job, threading.current_thread().name))


def test_fast_jobs_run_inline_after_the_first():
    rec = Recorder()
    dispatch = NewestDispatcher(rec, inline_max_s=0.05, name="worker")
    try:
        assert dispatch.submit(0) is False  # no duration known yet: the worker
        _wait_until(lambda: len(rec.done) == 1)
        for job in range(1, 5):
            assert dispatch.submit(job) is False
        assert [job for job, _ in rec.done] == [0, 1, 2, 3, 4]
        assert rec.done[0][1] == "worker"
        assert {thread for _, thread in rec.done[1:]} == {threading.current_thread().name}
        assert (dispatch.worker_jobs, dispatch.inline_jobs) == (1, 4)
        assert dispatch.mean_job_s is not None and dispatch.mean_job_s < 0.05
    finally:
        dispatch.close()


@pytest.mark.parametrize("inline_max_s", [0.0, 0.005])
def test_slow_jobs_or_inline_off_use_the_worker_and_count_skips(inline_max_s):
    rec = Recorder(sleep_s=0.02)  # slower than inline_max_s
    dispatch = NewestDispatcher(rec, inline_max_s=inline_max_s, name="worker")
    try:
        dispatch.submit(0)
        _wait_until(lambda: len(rec.done) == 1)
        rec.gate.clear()
        assert dispatch.submit(1) is False
        _wait_until(lambda: rec.running == 1)  # 1 is running (held at the gate)
        assert dispatch.submit(2) is False  # waits in the mailbox
        assert dispatch.submit(3) is True  # replaces 2: skipped
        rec.gate.set()
        _wait_until(lambda: len(rec.done) == 3)
        assert [job for job, _ in rec.done] == [0, 1, 3]
        assert {thread for _, thread in rec.done} == {"worker"}
        assert dispatch.inline_jobs == 0
    finally:
        dispatch.close()


def test_a_fast_job_waits_behind_a_running_one_and_order_is_kept():
    """While the worker runs a job, a new (fast) job must not run inline beside it or overtake it."""
    rec = Recorder()
    dispatch = NewestDispatcher(rec, inline_max_s=1.0, name="worker")
    try:
        dispatch.submit(0)
        _wait_until(lambda: len(rec.done) == 1)
        rec.gate.clear()
        # Send job 1 to the worker (inline off for it) and hold it running there.
        dispatch.inline_max_s = 0.0
        dispatch.submit(1)
        _wait_until(lambda: rec.running == 1)
        dispatch.inline_max_s = 1.0
        assert dispatch.submit(2) is False  # busy: goes to the mailbox, not inline
        assert dispatch.submit(3) is True
        assert rec.max_running == 1
        rec.gate.set()
        _wait_until(lambda: len(rec.done) == 3)
        assert [job for job, _ in rec.done] == [0, 1, 3]
        assert rec.max_running == 1
    finally:
        dispatch.close()


def test_errors_go_to_the_handler_and_the_dispatcher_keeps_working():
    errors: list[BaseException] = []
    seen: list[int] = []

    def process(job: int) -> None:
        if job == 1:
            raise RuntimeError("bad frame")
        seen.append(job)

    dispatch = NewestDispatcher(process, inline_max_s=1.0, on_error=errors.append)
    try:
        dispatch.submit(0)
        _wait_until(lambda: seen == [0])
        assert dispatch.submit(1) is False  # inline; the error does not reach the caller
        dispatch.submit(2)
        _wait_until(lambda: seen == [0, 2])
        assert [str(err) for err in errors] == ["bad frame"]
    finally:
        dispatch.close()


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="inline_max_s"):
        NewestDispatcher(lambda job: None, inline_max_s=-1.0)


def test_one_slow_job_sends_the_next_to_the_worker():
    """Cheap jobs (e.g. no subscribers) keep the average low; a slow one must not keep running inline."""
    durations = iter([0.0, 0.0, 0.0, 0.06, 0.0])
    done: list[tuple[int, str]] = []

    def process(job: int) -> None:
        time.sleep(next(durations))
        done.append((job, threading.current_thread().name))

    dispatch = NewestDispatcher(process, inline_max_s=0.03, name="worker")
    try:
        for job in range(5):
            dispatch.submit(job)
            _wait_until(lambda job=job: len(done) == job + 1)
        here = threading.current_thread().name
        # 0: worker (first); 1, 2, 3: inline (3 is the slow one); 4: worker, because 3 was slow
        assert [thread for _, thread in done] == ["worker", here, here, here, "worker"]
    finally:
        dispatch.close()
