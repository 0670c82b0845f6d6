"""The ROS 2 glue: the fusion node, its dispatcher and diagnostics."""
