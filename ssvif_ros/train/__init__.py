"""Offline training: losses, task weighting, trainer state."""
