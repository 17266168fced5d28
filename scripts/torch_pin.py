"""Exit 0 when the installed packages match every `name==version` pin on the command line, else 1.

`make setup` runs it to decide whether to (re)install the torch pin: a venv with another torch or torchvision
(an older pin, or a CUDA build of another version) is reinstalled, not kept because `import torch` works. A
local build tag is ignored (`2.14.1+cpu` matches `2.14.1`); a pin without `==` only has to be installed.
"""

import sys
from importlib import metadata


def matches(pin: str) -> bool:
    name, _, wanted = pin.partition("==")
    try:
        installed = metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        return False
    return not wanted or installed.split("+")[0] == wanted.strip()


if __name__ == "__main__":
    sys.exit(0 if all(matches(pin) for pin in sys.argv[1:]) else 1)
