"""Tests marked `service` (see tests/__init__.py)."""
