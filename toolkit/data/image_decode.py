"""Training's image decoder: a file -> (C, S, S) uint8 in the trained channels and resize policy.

torchvision decodes (io.decode_image, libpng/libjpeg) and resizes (transforms.v2.functional.resize,
antialiased bilinear); the geometry (resized size, crop or padding offsets) comes from
toolkit.runtime.processing.resize_plan, the same arithmetic every runtime applies with Pillow, so training and
predict/serve/edge cut the same pixels (tests/test_images.py measures the difference: at most a grey level or
two from the two resamplers). Without torchvision (a runtime-only install re-reading a folder for validate),
the runtime's Pillow decoder is used instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.runtime.processing import open_pixels, resize_plan

# PIL's L conversion (ITU-R 601-2 luma, fixed point): libpng's own grey conversion uses other weights, so
# colour images are decoded as RGB and made grey here the way every runtime (Pillow) does.
LUMA = (19595, 38470, 7471)


def decode_file(path: str | Path, size: int, channels: int, policy: str) -> np.ndarray:
    """(C, SIZE, SIZE) uint8. Raises on an unreadable file (the caller decides what to do with it)."""
    try:
        import torch  # noqa: F401
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return open_pixels(Path(path).read_bytes(), channels, size, policy)
    return _decode_torchvision(str(path), size, channels, policy, decode_image, ImageReadMode).numpy()


def _decode_torchvision(path: str, size: int, channels: int, policy: str, decode_image, modes):
    import torch
    from torchvision.io import read_file
    from torchvision.transforms.v2 import functional as F

    data = read_file(path)
    try:
        img = decode_image(data, mode=modes.RGB)  # (3, H, W) uint8; alpha dropped as Pillow's convert("RGB")
    except RuntimeError:
        # Formats torchvision's decoders do not cover (BMP, TIFF, ...) and palette corner cases: Pillow.
        return torch.from_numpy(open_pixels(data.numpy().tobytes(), channels, size, policy))
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = F.to_dtype(img, torch.uint8, scale=True)
    if channels == 1:
        r, g, b = img.to(torch.int32)
        img = ((r * LUMA[0] + g * LUMA[1] + b * LUMA[2] + 0x8000) >> 16).to(torch.uint8)[None]
    return fit_tensor(img, size, policy)


def fit_tensor(img, size: int, policy: str):
    """(C, H, W) uint8 tensor -> (C, SIZE, SIZE) by the resize policy (antialiased bilinear)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    _, h, w = img.shape
    nw, nh, left, top = resize_plan(w, h, size, policy)
    if (nh, nw) != (h, w):
        img = F.resize(img, [nh, nw], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    if policy == "crop":
        return img[:, top : top + size, left : left + size].contiguous()
    if policy == "letterbox":
        canvas = torch.zeros((img.shape[0], size, size), dtype=torch.uint8)
        canvas[:, top : top + nh, left : left + nw] = img
        return canvas
    return img
