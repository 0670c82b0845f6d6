"""Evaluation: fusion metrics."""
