"""Debian's PostgreSQL server binaries for the distributed-tuning test (tests/test_tune_postgres.py).

Prints the bin directory (initdb, postgres, pg_ctl) when found; installs Debian's `postgresql` package with
apt-get when missing (as root, or with sudo that needs no password). Exit code 1 with the reason otherwise.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys


def bin_dir() -> str | None:
    """The newest /usr/lib/postgresql/VERSION/bin holding initdb, or the directory of initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    on_path = shutil.which("initdb")
    return os.path.dirname(on_path) if on_path else None


def install() -> str | None:
    """apt-get install postgresql; None when it worked, else why not."""
    if shutil.which("apt-get") is None:
        return "no PostgreSQL binaries and no apt-get: install PostgreSQL (initdb, postgres, pg_ctl)"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        return "no PostgreSQL binaries, and apt-get needs root: run `sudo apt-get install postgresql`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("postgres-setup: installing Debian's postgresql with apt-get", file=sys.stderr, flush=True)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        proc = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            tail = [x for x in proc.stderr.splitlines() if x.strip()] or ["no output"]
            return f"apt-get could not install postgresql: {tail[-1][:200]}"
    return None if bin_dir() else "apt-get ran but no initdb was found"


def main() -> int:
    problem = None if bin_dir() else install()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(bin_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
