"""Per-pair fusion, ROS-free: pairing, thermal gain, registration, the engine and its backends, overlay,
classic baselines."""
