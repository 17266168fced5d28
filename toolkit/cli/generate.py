"""`toolkit generate`: images of a requested class from a GAN run, written as 8-bit PNG files."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli._common import console, handle_errors, print_json


@handle_errors
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A GAN run directory (written by `toolkit train gan`).")],
    label: Annotated[str, typer.Option(help="Class to draw: a class name from the data, or its index.")],
    count: Annotated[int, typer.Option(help="How many images.")] = 16,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the PNG files (default RUN_DIR/generated).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Noise seed: the same seed draws the same images.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Generate images of one class; PNG files at the data's size and channels (LABEL_0000.png, ...)."""
    from toolkit.io import write_bytes
    from toolkit.train.gan import generate as generate_api
    from toolkit.train.gan import load_gan, resolve_label

    images = generate_api(run_dir, label, count, seed)  # (K, C, H, W) in [0, 1]; validates all arguments
    _, spec, _ = load_gan(run_dir)
    name = spec["labels"][resolve_label(label, spec["labels"])]
    out = out if out is not None else run_dir / "generated"
    stem = re.sub(r"[^\w.-]+", "_", name)  # a class name is safe in a file name
    files = []
    for i, img in enumerate(images):
        path = out / f"{stem}_{i:04d}.png"
        write_bytes(path, _png(img))
        files.append(str(path))
    c, h, w = images.shape[1:]
    if as_json:
        print_json(
            {
                "run_dir": str(run_dir),
                "label": name,
                "count": len(files),
                "seed": seed,
                "shape": [c, h, w],
                "out": str(out),
                "files": files,
            }
        )
        return
    mode = "grayscale" if c == 1 else "RGB"
    console.print(
        f"wrote {len(files)} images of class {name!r} ({w}x{h} {mode}, seed {seed}) to [bold]{out}[/]"
    )


def _png(img) -> bytes:
    """(C, H, W) in [0, 1] -> 8-bit grayscale or RGB PNG bytes."""
    import numpy as np
    from PIL import Image

    pixels = np.round(img.transpose(1, 2, 0) * 255).astype(np.uint8)  # (H, W, C)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG")  # L or RGB
    return buf.getvalue()
