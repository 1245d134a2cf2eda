"""Tests marked `e2e` (see tests/__init__.py)."""
