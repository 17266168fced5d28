"""Signed models: sign and verify a model's files with OpenSSF model-signing (EC keys, offline, sigstore bundle).

A model's signature covers exactly the files a runtime reads: the .onnx (or .ort) file, the external-data
files it names and its sidecar NAME.json when present; it lies beside the model as NAME.onnx.sig. A bundle's
signature (bundle.sig) covers manifest.json and every file the manifest lists. Verification recomputes the
set of files and asks model-signing to match it exactly, so a changed byte, a missing, added or swapped file,
a missing signature or one made with another key is refused with one line naming the reason.

This file imports only the standard library (model_signing inside the functions): `toolkit edge pack` copies it
into bundles beside runner.py, where toolkit is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator

SUFFIX = ".sig"  # a model's signature: NAME.onnx.sig beside NAME.onnx
BUNDLE_SIGNATURE = "bundle.sig"  # a bundle's signature, beside its manifest.json
INSTALL = "install model-signing (pip install 'toolkit[sign]' or pip install model-signing) to sign or verify"


class SignatureError(ValueError):
    """A model or bundle whose signature is missing, foreign or does not match its files (one line)."""


def signature_path(model_path: str) -> str:
    return os.fspath(model_path) + SUFFIX


def model_files(model_path: str, external: Iterable[str] = ()) -> list[str]:
    """The names (relative to the model's folder) a signature of `model_path` covers: the model file, its
    external-data files (`external`, as the model names them) and its sidecar NAME.json when present."""
    folder, name = os.path.split(os.path.abspath(model_path))
    stem = name.removesuffix(".onnx").removesuffix(".ort")
    names = [name, *(os.path.normpath(loc) for loc in external)]
    if os.path.isfile(os.path.join(folder, stem + ".json")):
        names.append(stem + ".json")
    return sorted(set(names))


def bundle_files(bundle: str) -> list[str]:
    """manifest.json, SHA256SUMS and every file the manifest lists: what a bundle's signature covers."""
    try:
        with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as f:
            listed = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SignatureError(
            f"{bundle} has no readable manifest.json: not a bundle to sign or verify"
        ) from None
    sums = ["SHA256SUMS"] if os.path.isfile(os.path.join(bundle, "SHA256SUMS")) else []
    return sorted({"manifest.json", *sums, *listed})


def _library():
    try:
        from model_signing import signing, verifying
    except ImportError:
        raise SignatureError(INSTALL) from None
    return signing, verifying


@contextlib.contextmanager
def _gathered(folder: str, names: list[str]) -> Iterator[str]:
    """A private folder holding exactly `names` from `folder` (hard links, copies across file systems), so
    model-signing hashes that set and nothing else the folder holds (checkpoints, other models, logs)."""
    tmp = tempfile.mkdtemp(prefix="toolkit-sign-")
    try:
        root = os.path.join(tmp, "model")
        for name in names:
            source, target = os.path.join(folder, name), os.path.join(root, name)
            if not os.path.isfile(source):
                raise SignatureError(
                    f"{source} is missing: a signed model needs every file it was signed with"
                )
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        yield root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_private_key(key: str, password: str | None = None):
    """model-signing's signing configuration for the EC private key at `key` (PEM); SignatureError (one line)
    when the library is missing or the key is absent or unusable."""
    signing, _ = _library()
    if not os.path.isfile(key):
        raise SignatureError(f"no signing key at {key} (an EC private key in PEM, e.g. from openssl ecparam)")
    try:
        return signing.Config().use_elliptic_key_signer(private_key=key, password=password)
    except Exception as exc:  # noqa: BLE001 (the library raises ValueError, TypeError, UnsupportedAlgorithm)
        raise SignatureError(f"cannot use {key} as a signing key: {_line(exc)}") from None


def sign(folder: str, names: list[str], key: str, out: str, password: str | None = None) -> str:
    """Sign `names` (files in `folder`) with the EC private key at `key` (PEM); the sigstore bundle goes to
    `out`, written atomically. Returns `out`."""
    config = check_private_key(key, password)
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        with _gathered(folder, names) as root:
            config.sign(root, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def verify(folder: str, names: list[str], public_key: str, sig: str) -> None:
    """SignatureError unless `sig` is a signature by `public_key` over exactly `names` as they are now."""
    _, verifying = _library()
    if not os.path.isfile(public_key):
        raise SignatureError(f"no public key at {public_key} (the PEM public key of the signing key)")
    if not os.path.isfile(sig):
        raise SignatureError(f"unsigned: no signature {os.path.basename(sig)} beside the model")
    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except Exception as exc:  # noqa: BLE001
        raise SignatureError(f"cannot use {public_key} as a public key: {_line(exc)}") from None
    with _gathered(folder, names) as root:
        try:
            config.verify(root, sig)
        except Exception as exc:  # noqa: BLE001 (model-signing and sigstore raise several kinds)
            raise SignatureError(_reason(exc, sig)) from None


def _reason(exc: Exception, sig: str) -> str:
    """One line from model-signing's exception: which files changed, appeared or went missing, or why the
    signature itself does not verify."""
    text = _line(exc)
    name = os.path.basename(sig)
    if "Signature mismatch" not in text:
        return f"signature {name} does not verify with this key ({text[:200]})"
    text, found = text.replace("\\'", "'"), []  # the diff arrives as a list's repr
    for pattern, what in (
        (r"Hash mismatch for '([^']+)'", "{} changed"),
        (r"Extra files found in model '[^']*': ([^'\]\"]+)", "{} not signed"),
        (r"Missing files in model '[^']*': ([^'\]\"]+)", "{} missing"),
    ):
        found += [what.format(m.strip()) for m in re.findall(pattern, text)]
    return f"files differ from their signature {name}: {'; '.join(found) or text[:200]}"


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text
