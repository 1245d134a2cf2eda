"""Helpers for the tests (no tests here): servers on loopback, the stack, PostgreSQL, policies."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
