"""Debian's chromium for the browser tests, driven by Playwright through its executable path."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# as the machine's probe starts it: without the background networking, a closed network refuses
# Chromium's own connections many at a time
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """Debian's chromium, installed here when missing (as root; nothing else can)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("chromium is missing and only root may install it (apt-get install -y chromium)")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=True)
        subprocess.run(install, capture_output=True, env=env, check=True)
    return shutil.which("chromium") or pytest.fail("apt-get installed no chromium")
