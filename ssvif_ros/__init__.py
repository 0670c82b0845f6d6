"""ssvif_ros: visible + thermal image fusion for ROS 2 robots, trained segmentation-aware without labels."""

__version__ = "0.1.0"
