"""`toolkit sign` and `toolkit verify`: OpenSSF model-signing signatures over a model's files or a bundle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from toolkit.cli._common import console, handle_errors, print_json

Model = Annotated[
    Path,
    typer.Argument(
        help="A .onnx/.ort model (signed with its external data and NAME.json sidecar) or a bundle folder "
        "from `toolkit edge pack` (manifest.json and every file it lists)."
    ),
]


@handle_errors
def sign(
    model: Model,
    key: Annotated[Path, typer.Option("--key", help="EC private key in PEM (P-256, P-384 or P-521).")],
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Name of an environment variable holding the key's password."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Sign a model (MODEL.onnx.sig beside it) or a bundle (bundle.sig in it) with a private key.

    The signature is a sigstore bundle made offline by OpenSSF's model-signing library; `toolkit verify`,
    `toolkit serve --verify-key` and the edge runner's --verify-key check it with the public key.
    """
    from toolkit.runtime import trust

    password = os.environ.get(password_env) if password_env else None
    sig = trust.sign(model, key, password)
    if as_json:
        print_json({"model": str(model), "signature": str(sig)})
    else:
        console.print(f"[green]signed[/] {escape(str(model))} -> {escape(str(sig))}")


@handle_errors
def verify(
    model: Model,
    key: Annotated[Path, typer.Option("--key", help="The signer's EC public key in PEM.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check that a model's (or bundle's) files are exactly those its signature covers, signed by KEY.

    Exit code 2 with one line naming the reason when the signature is missing, made with another key, or a
    file was changed, added or removed.
    """
    from toolkit.runtime import trust

    sig = trust.verify(model, key)
    if as_json:
        print_json({"model": str(model), "signature": str(sig), "verified": True})
    else:
        console.print(f"[green]verified[/] {escape(str(model))} ({escape(sig.name)})")
