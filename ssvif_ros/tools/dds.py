"""Middleware settings for image streams between processes on one computer.

Why: with Fast DDS defaults a 640×480 rgb8 image (921 KB) does not fit the default shared-memory segment and
travels over UDP loopback in fragments; with the default 208 KB socket receive buffers most best-effort frames
are lost and reliable ones wait for retransmissions (~13 ms per hop measured in bench/node_latency.py). A
larger shared-memory segment delivers them in ~2.5 ms. The same profile is what a robot running the node
and its camera drivers on one computer wants.

Fast DDS reads the profile named by ``FASTDDS_DEFAULT_PROFILES_FILE`` when a process creates its first
participant, so :func:`use_shm_transport` must run before ``rclpy.init()`` in the processes that should use it
(children started afterwards inherit the variable). Other middlewares ignore the file.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["FASTDDS_PROFILE_VARIABLE", "FASTDDS_SHM_PROFILE", "use_shm_transport", "write_shm_profile"]

FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"

# A 32 MiB shared-memory segment with messages up to 16 MiB (a 1920×1080 rgb8 frame is 6.2 MB), plus UDP
# for whatever shared memory cannot reach; the profile is the default one, so every participant uses it.
FASTDDS_SHM_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>shm_images</transport_id>
        <type>SHM</type>
        <segment_size>33554432</segment_size>
        <maxMessageSize>16777216</maxMessageSize>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>udp</transport_id>
        <type>UDPv4</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="ssvif_images" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>shm_images</transport_id>
          <transport_id>udp</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def write_shm_profile(folder: str | os.PathLike) -> Path:
    """Write the shared-memory Fast DDS profile to ``folder/fastdds_shm.xml`` and return its path."""
    path = Path(folder) / "fastdds_shm.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FASTDDS_SHM_PROFILE)
    return path


def use_shm_transport(folder: str | os.PathLike, env: MutableMapping[str, str] | None = None) -> Path:
    """Write the profile into ``folder`` and point ``env`` (default ``os.environ``) at it.

    Call before ``rclpy.init()``; returns the profile path. ``ROS_DOMAIN_ID`` and
    ``ROS_AUTOMATIC_DISCOVERY_RANGE`` are left as they are.
    """
    path = write_shm_profile(folder)
    (os.environ if env is None else env)[FASTDDS_PROFILE_VARIABLE] = str(path)
    return path
