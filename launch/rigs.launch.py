"""Launch one fusion node per camera pair listed in a YAML file (e.g. a front and a rear rig).

    ros2 launch ssvif_ros rigs.launch.py rigs_file:=/path/to/rigs.yaml

The file (example: the installed ``config/rigs.yaml``) lists ``rigs``, each with ``name`` (the node's
namespace: outputs on ``/<name>/fuse_node/fused/...``), ``visible_topic``, ``thermal_topic`` and optionally
``params_file`` (default: the installed ``config/fuse.yaml``) and ``managed`` (the lifecycle node). Names
must be unique: two nodes in one namespace would publish on the same topics.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "ssvif_ros"
REQUIRED = ("name", "visible_topic", "thermal_topic")


def rig_nodes(context, *args, **kwargs) -> list:
    """One Node per rig of ``rigs_file`` (evaluated at launch time); ValueError naming the file and field."""
    path = Path(LaunchConfiguration("rigs_file").perform(context))
    default_params = LaunchConfiguration("params_file").perform(context)
    rigs = (yaml.safe_load(path.read_text()) or {}).get("rigs")
    if not isinstance(rigs, list) or not rigs:
        raise ValueError(f"{path}: expected a non-empty list 'rigs' (see config/rigs.yaml)")
    names = [rig.get("name") for rig in rigs if isinstance(rig, dict)]
    nodes = []
    for index, rig in enumerate(rigs):
        missing = [key for key in REQUIRED if not isinstance(rig, dict) or not rig.get(key)]
        if missing:
            raise ValueError(f"{path}: rig {index} lacks {', '.join(missing)}")
        if names.count(rig["name"]) > 1:
            raise ValueError(f"{path}: rig name {rig['name']!r} is used twice (names are namespaces)")
        nodes.append(
            Node(
                package=PACKAGE,
                executable="fuse_node_lifecycle" if rig.get("managed") else "fuse_node",
                name="fuse_node",
                namespace=str(rig["name"]),
                parameters=[str(rig.get("params_file") or default_params)],
                remappings=[  # the raw topics and image_transport's compressed siblings
                    (f"{role}/image_raw{suffix}", f"{rig[f'{role}_topic']}{suffix}")
                    for suffix in ("", "/compressed")
                    for role in ("visible", "thermal")
                ],
                output="screen",
            )
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            "rigs_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "rigs.yaml"]),
            description="YAML listing the camera pairs (see config/rigs.yaml)",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fuse.yaml"]),
            description="parameters file of the rigs that name none",
        ),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=rig_nodes)])
