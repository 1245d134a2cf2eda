"""Tests marked `unit` (see tests/__init__.py)."""
