"""The automatic inference thread count (issue 15: torch's default was 9x slower on a small shared CPU)."""

from __future__ import annotations

import pytest
import torch

from ssvif_ros.fusion import threads
from ssvif_ros.fusion.threads import apply_threads, auto_threads, usable_cores


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 4)])
def test_auto_threads_leave_cores_to_the_rest_of_the_robot(cores, expected):
    assert auto_threads("cpu", cores) == expected


def test_on_cuda_one_thread_does_the_pre_and_post_processing():
    assert auto_threads("cuda:0", 64) == 1


def test_usable_cores_follow_the_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    quota = tmp_path / "cpu.max"
    quota.write_text("200000 100000\n")  # two CPUs' worth of time
    real_path = threads.Path
    monkeypatch.setattr(threads, "Path", lambda p: quota if p == "/sys/fs/cgroup/cpu.max" else real_path(p))
    assert usable_cores() == 2
    quota.write_text("max 100000\n")
    assert usable_cores() == 6


def test_apply_threads_sets_torch_and_says_why(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    try:
        assert apply_threads(0, "cpu") == "4 inference thread(s) (automatic: 8 usable core(s), device cpu)"
        assert torch.get_num_threads() == 4
        assert apply_threads(3, "cpu") == "3 inference thread(s) (as requested)"
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
