"""Middleware settings for image streams between processes on one computer.

Why: with Fast DDS defaults a 640×480 rgb8 image (921 KB) does not fit the default shared-memory segment and
travels over UDP loopback in fragments; with the default 208 KB socket receive buffers most best-effort frames
are lost and reliable ones wait for retransmissions (~13 ms per hop measured in bench/node_latency.py). A
larger shared-memory segment delivers them in ~2.5 ms. The same profile is what a robot running the node
and its camera drivers on one computer wants.

Fast DDS reads the profile named by ``FASTDDS_DEFAULT_PROFILES_FILE`` when a process creates its first
participant, so :func:`use_shm_transport` must run before ``rclpy.init()`` in the processes that should use it
(children started afterwards inherit the variable). Other middlewares ignore the file. The fusion node,
``ssvif-play`` and ``ssvif-record`` do this for their own processes (:func:`choose_transport`); the camera
drivers' processes need it too, since a publisher places each sample in its own segment:

    python -m ssvif_ros.tools.dds            # writes the profile, prints the line to export
    export FASTDDS_DEFAULT_PROFILES_FILE=~/.config/ssvif_ros/fastdds_shm.xml   # then start the drivers
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path

__all__ = [
    "FASTDDS_PROFILE_VARIABLE",
    "FASTDDS_SHM_PROFILE",
    "choose_transport",
    "describe_transport",
    "main",
    "use_shm_transport",
    "write_shm_profile",
]

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
    """Write the shared-memory Fast DDS profile to ``folder/fastdds_shm.xml`` and return its path. The node,
    the player and the recorder start together and share the file: it is replaced whole (a temporary file
    renamed over it), and only when its text differs, so no process reads it half-written."""
    path = Path(folder) / "fastdds_shm.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == FASTDDS_SHM_PROFILE:
        return path
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(FASTDDS_SHM_PROFILE)
    os.replace(partial, path)
    return path


def use_shm_transport(folder: str | os.PathLike, env: MutableMapping[str, str] | None = None) -> Path:
    """Write the profile into ``folder`` and point ``env`` (default ``os.environ``) at it.

    Call before ``rclpy.init()``; returns the profile path. ``ROS_DOMAIN_ID`` and
    ``ROS_AUTOMATIC_DISCOVERY_RANGE`` are left as they are.
    """
    path = write_shm_profile(folder)
    (os.environ if env is None else env)[FASTDDS_PROFILE_VARIABLE] = str(path)
    return path


def default_profile_folder() -> Path:
    """``$XDG_CONFIG_HOME/ssvif_ros`` (``~/.config/ssvif_ros``): one profile per user, shared by the node
    and the camera drivers."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ssvif_ros"


def describe_transport(env: MutableMapping[str, str] | None = None) -> str:
    """What this process's middleware uses for images, in a few words (for the node's ready line)."""
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw != "rmw_fastrtps_cpp":
        return f"{rmw} with its own transport settings"
    profile = env.get(FASTDDS_PROFILE_VARIABLE)
    if not profile:
        return "Fast DDS defaults (large images may be lost between processes: see ssvif_ros.tools.dds)"
    if Path(profile).name == "fastdds_shm.xml":
        return f"Fast DDS shared memory for large images ({profile})"
    return f"the Fast DDS profile {profile}"


def choose_transport(
    env: MutableMapping[str, str] | None = None, folder: str | os.PathLike | None = None
) -> str:
    """Choose the transport of a process that sends or receives large images (the fusion node,
    ``ssvif-play``, ``ssvif-record``) before ``rclpy.init()``; returns :func:`describe_transport`.

    A profile the user set (``FASTDDS_DEFAULT_PROFILES_FILE``) or another middleware (``RMW_IMPLEMENTATION``
    other than Fast DDS) is kept; otherwise the shared-memory profile is written to ``folder`` (default
    :func:`default_profile_folder`) and used: with Fast DDS defaults the node lost ~75 % of 640×480 frames
    between processes (issue 15).
    """
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if (not rmw or rmw == "rmw_fastrtps_cpp") and not env.get(FASTDDS_PROFILE_VARIABLE):
        try:
            use_shm_transport(default_profile_folder() if folder is None else folder, env)
        except OSError:
            pass  # described as Fast DDS defaults
    return describe_transport(env)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssvif_ros.tools.dds``: write the profile for the camera drivers' processes."""
    p = argparse.ArgumentParser(
        prog="python -m ssvif_ros.tools.dds",
        description="Write the Fast DDS shared-memory profile that delivers large images between processes "
        "on one computer, and print the line that makes a process (a camera driver) use it.",
    )
    p.add_argument("--out", type=Path, default=None, help="folder (default ~/.config/ssvif_ros)")
    p.add_argument("--print", action="store_true", help="print the XML instead of writing it")
    args = p.parse_args(argv)
    if args.print:
        print(FASTDDS_SHM_PROFILE, end="")
        return 0
    try:
        path = write_shm_profile(default_profile_folder() if args.out is None else args.out)
    except OSError as err:
        print(f"ssvif-dds-profile: error: cannot write the profile: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}; before starting the camera drivers (and any other image publisher), run:")
    print(f"export {FASTDDS_PROFILE_VARIABLE}={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
