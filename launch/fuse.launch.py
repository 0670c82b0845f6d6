"""Launch the ssvif_ros fusion node with its parameters file and the camera topics remapped.

    ros2 launch ssvif_ros fuse.launch.py visible_topic:=/camera/image_raw thermal_topic:=/flir/image_raw \
        params_file:=/path/to/my_fuse.yaml namespace:=robot1

Arguments: ``namespace`` (default empty), ``params_file`` (default: the installed config/fuse.yaml),
``visible_topic`` and ``thermal_topic`` (remapped onto the node's ``visible/image_raw`` and
``thermal/image_raw``), ``node_name`` (default ``fuse_node``), ``managed`` (``true``: the lifecycle
variant ``fuse_node_lifecycle``, started unconfigured for a lifecycle manager or ``ros2 lifecycle set``;
default ``false``). Outputs appear on
``<namespace>/<node_name>/fused/{image,segmentation,overlay}``; diagnostics on ``/diagnostics``.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "ssvif_ros"


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the fusion node"),
        DeclareLaunchArgument("node_name", default_value="fuse_node", description="name of the fusion node"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fuse.yaml"]),
            description="ROS 2 parameters file for the node (see config/fuse.yaml for every parameter)",
        ),
        DeclareLaunchArgument(
            "visible_topic", default_value="/camera/image_raw", description="visible camera image topic"
        ),
        DeclareLaunchArgument(
            "thermal_topic", default_value="/thermal/image_raw", description="thermal camera image topic"
        ),
        DeclareLaunchArgument(
            "managed",
            default_value="false",
            choices=["true", "false"],
            description="true: the managed (lifecycle) node, started unconfigured",
        ),
    ]
    executable = PythonExpression(
        ["'fuse_node_lifecycle' if '", LaunchConfiguration("managed"), "' == 'true' else 'fuse_node'"]
    )
    node = Node(
        package=PACKAGE,
        executable=executable,
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[  # the raw topics and image_transport's compressed siblings (inputs.transport)
            (f"{role}/image_raw{suffix}", [LaunchConfiguration(f"{role}_topic"), suffix])
            for suffix in ("", "/compressed")
            for role in ("visible", "thermal")
        ],
        output="screen",
    )
    return LaunchDescription([*arguments, node])
