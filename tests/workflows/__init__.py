"""Tests marked `workflows` (see tests/__init__.py)."""
