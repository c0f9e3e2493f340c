"""Spoon Feeder: self-hosted AI content orchestration."""

__version__ = "0.1.0"  # kept in step with pyproject.toml
