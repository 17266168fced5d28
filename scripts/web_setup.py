#!/usr/bin/env python3
"""Install what the browser pieces need, once: Debian's Chromium (the playground and web-bundle tests drive it
headless with Playwright), the pinned onnxruntime-web (npm ci into the user's cache: `toolkit edge pack
--target web` vendors it) and the onnxruntime wheel that writes web bundles' ORT-format models (the release
onnxruntime-web is built from).

Run by `make setup` (and by the browser tests when something is missing). Quick when everything is there.
It never fails the set-up: what cannot be installed here is printed, and the tests that need it skip with
that reason. `--check` installs nothing and exits 1 when something is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys


def chromium() -> str | None:
    """Chromium on PATH, or installed with apt-get (as root, or with sudo that needs no password)."""
    from toolkit.runtime.edge.browser import chromium_path

    found = chromium_path()
    if found:
        return None
    if shutil.which("apt-get") is None:
        return "no Chromium and no apt-get: install Chromium and set TOOLKIT_CHROMIUM if it is not on PATH"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        return "no Chromium, and apt-get needs root: run `sudo apt-get install chromium`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("web-setup: installing Debian's chromium with apt-get", flush=True)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        proc = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            tail = [x for x in proc.stderr.splitlines() if x.strip()] or ["no output"]
            return f"apt-get could not install chromium: {tail[-1][:200]}"
    return None if chromium_path() else "apt-get ran but no chromium is on PATH"


def ort_web() -> str | None:
    from toolkit.errors import ToolkitError
    from toolkit.runtime.edge.web import install_ort_web

    try:
        install_ort_web()
    except ToolkitError as exc:
        return str(exc)
    return None


def ort_converter() -> str | None:
    from toolkit.errors import ToolkitError
    from toolkit.runtime.edge.bundle import converter_path
    from toolkit.runtime.edge.web import ort_web_version

    try:
        converter_path(ort_web_version())
    except ToolkitError as exc:
        return str(exc)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="install nothing; exit 1 when something is missing")
    args = ap.parse_args()
    if args.check:
        from toolkit.runtime.edge.browser import unavailable
        from toolkit.runtime.edge.web import ort_web_installed

        missing = [why for why in (unavailable(),) if why]
        if not ort_web_installed():
            missing.append("onnxruntime-web is not installed")
        for why in missing:
            print(f"web-setup: {why}")
        return 1 if missing else 0
    problems = {
        name: step()
        for name, step in (
            ("chromium", chromium),
            ("onnxruntime-web", ort_web),
            ("ort-converter", ort_converter),
        )
    }
    for name, why in problems.items():
        print(f"web-setup: {name}: {why or 'ok'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
