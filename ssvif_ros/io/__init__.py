"""Message and file I/O at the edges of the node: ``sensor_msgs/Image`` <-> numpy (:mod:`.image_msg`).

Submodules are imported explicitly (``from ssvif_ros.io.image_msg import to_rgb8``) so that importing one
does not pull in the ROS or bag-reading dependencies of another.
"""
