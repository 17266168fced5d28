"""Headless Chromium for web bundles: serve a folder on loopback and drive the system's Chromium with
Playwright (no browser download: Playwright is told the executable). `toolkit edge verify` runs a web bundle's
self-test this way, and the tests and bench/web_bench.py use the same pieces.

Chromium is the system's (Debian: `apt-get install chromium`; or $TOOLKIT_CHROMIUM). It starts with the
flags a closed network needs (no background networking, component updates or sync; no QUIC).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in containers and CI; the pages are our own
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
MIME = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
}


def chromium_path() -> str | None:
    """$TOOLKIT_CHROMIUM, else the first Chromium on PATH; None when there is none."""
    given = os.environ.get("TOOLKIT_CHROMIUM")
    if given:
        return given if os.path.isfile(given) else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def unavailable() -> str | None:
    """Why a headless browser cannot be started here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (install toolkit[web])"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set TOOLKIT_CHROMIUM)"
    return None


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}

    def log_message(self, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextlib.contextmanager
def serve_folder(folder: str | Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) while the block runs; yields its base URL."""
    handler = functools.partial(_Handler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def headless_chromium(extra_flags: list[str] | None = None, playwright: Any = None) -> Iterator[Any]:
    """A Playwright Browser on the system's Chromium, headless; ToolkitError when none can start. Within a
    running Playwright (sync API: one per thread), pass it as `playwright`."""
    why = unavailable()
    if why:
        raise ToolkitError(f"cannot start a headless browser: {why}")
    from playwright.sync_api import Error, sync_playwright

    with contextlib.ExitStack() as stack:
        pw = playwright or stack.enter_context(sync_playwright())
        try:
            browser = pw.chromium.launch(
                executable_path=chromium_path(), headless=True, args=[*CHROMIUM_FLAGS, *(extra_flags or [])]
            )
        except Error as exc:
            raise ToolkitError(f"cannot start {chromium_path()}: {str(exc).splitlines()[0]}") from None
        try:
            yield browser
        finally:
            browser.close()


def page_ready(page: Any, url: str, timeout_s: float = 60) -> dict[str, Any]:
    """Open a bundle's page and wait for its self-test: {coldStartMs, backend, selfTest, timings}; page errors
    (a module that fails to load, an exception) are raised as ToolkitError with the page's message."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    try:
        page.wait_for_function("() => window.toolkitPage !== undefined", timeout=timeout_s * 1000)
        return page.evaluate(
            """async () => { const r = await window.toolkitPage.ready;
                 return {coldStartMs: r.coldStartMs, backend: r.model.backend, timings: r.timings,
                         selfTest: {passed: r.selfTest.passed, detail: r.selfTest.detail}}; }"""
        )
    except Exception as exc:
        status = page.locator("#status").text_content(timeout=1000) if page.locator("#status").count() else ""
        detail = errors[0] if errors else (status or str(exc).splitlines()[0])
        raise ToolkitError(f"the page did not load its model: {detail}") from None
