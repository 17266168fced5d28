"""Signed models on the toolkit side: sign or verify a model file or a bundle, with one-line ToolkitErrors.

The signing itself is toolkit.runtime.signature (OpenSSF model-signing, shipped into bundles too) over the set
of files the edge runner names (toolkit.runtime.edge.runner.sign_path / verify_path): the server, the CLI and
a device check the same files the same way.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.runtime.edge import runner


def check_signing_key(key: str | Path) -> None:
    """ToolkitError before any work when a step asked to sign (--sign-key) cannot: no model-signing, no key
    file, or a file that is not an EC private key."""
    from toolkit.runtime import signature

    try:
        signature.check_private_key(str(key))
    except signature.SignatureError as exc:
        raise ToolkitError(str(exc)) from None


def sign(path: str | Path, key: str | Path, password: str | None = None) -> Path:
    """Sign the model file at `path` (with its external data and sidecar) or the bundle folder at `path`
    with the EC private key `key` (PEM); returns the signature file written beside it."""
    try:
        return Path(runner.sign_path(str(path), str(key), password))
    except runner.InputError as exc:
        raise ToolkitError(str(exc)) from None


def verify(path: str | Path, public_key: str | Path) -> Path:
    """ToolkitError (one line: unsigned, altered, foreign key) unless `path` verifies with `public_key`."""
    try:
        return Path(runner.verify_path(str(path), str(public_key)))
    except runner.InputError as exc:
        raise ToolkitError(str(exc)) from None
