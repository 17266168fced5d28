"""Headless Chromium for the browser tests: the system's Chromium driven by Playwright (no browser download).

When Chromium, Playwright or the pinned onnxruntime-web is missing, the fixture runs scripts/web_setup.py
(what `make setup` runs: apt-get for Chromium, npm ci for onnxruntime-web) once, and skips the browser tests
only when that could not install them, naming why. The fixtures are registered in conftest.py, one
Playwright per test module: its sync API allows one per thread, and keeps an asyncio loop running in it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A software WebGPU adapter (SwiftShader's Vulkan) for headless Chromium without a GPU.
WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader", "--enable-unsafe-swiftshader"]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, after trying to install what is missing (None: they can)."""
    from toolkit.runtime.edge.browser import unavailable
    from toolkit.runtime.edge.web import ort_web_installed

    if unavailable() is None and ort_web_installed():
        return None
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "web_setup.py")], capture_output=True, text=True, timeout=1800
    )
    why = unavailable()
    if why is None and not ort_web_installed():
        why = "onnxruntime-web could not be installed: " + (proc.stdout.strip().splitlines() or ["?"])[-1]
    return why


@pytest.fixture(scope="module")
def playwright():
    """Playwright for a test module (skips the test, naming why, when no browser can run here)."""
    why = browser_missing()
    if why:
        pytest.skip(f"no headless browser: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright):
    """A headless Chromium for a test module."""
    from toolkit.runtime.edge.browser import headless_chromium

    with headless_chromium(playwright=playwright) as chromium:
        yield chromium
