"""Shared fixtures: the real data folder beside the project (skipped when absent) and a quiet torch."""

from __future__ import annotations

import os
import random
from pathlib import Path

# Network safety, before anything can import rclpy: DDS stays on loopback, in a domain of this run's own
# (`make test` exports one; a bare `pytest` picks one here).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
# Node processes write their transport profile under $XDG_CONFIG_HOME (ssvif_ros.tools.dds): not the
# user's own configuration folder.
os.environ["XDG_CONFIG_HOME"] = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"ssvif_ros_test_config_{os.getuid()}_{os.getpid()}"
)

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Two cores: keep each test process from oversubscribing them.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (public visible/infrared pairs); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a fresh clone has no ../shared)")
    return SHARED_DATA
