"""Pictures of explanations as PNG bytes, drawn with Pillow (no matplotlib: this runs on devices too).

images: one row per input: the input, the attribution map, the map over the input, the top labels;
autoencoders: input, reconstruction, error map, overlay, the verdict; tables: a bar per feature (the largest
first); series: the input window with the forecast and a bar per past step; texts: the tokens on coloured
backgrounds. Signed maps use a diverging scale (blue lowers the score, red raises it) symmetric about zero;
the error map a sequential one (black to yellow).
"""

from __future__ import annotations

import io

import numpy as np

from . import _core

PANEL = 112  # side of an image panel, pixels
PAD = 6
WHITE, GREY, BLACK = (255, 255, 255), (120, 120, 120), (0, 0, 0)
_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]])
_SEQUENTIAL = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]])


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def colours(values: np.ndarray, signed: bool = True, scale: float | None = None) -> np.ndarray:
    """Values -> (..., 3) uint8 RGB: diverging about 0 (scaled by the largest |value|) or sequential."""
    v = np.asarray(values, dtype=np.float64)
    if signed:
        top = scale or float(np.abs(v).max()) or 1.0
        t = np.clip(v / top, -1, 1) * 0.5 + 0.5
        lut = _DIVERGING
    else:
        lo, hi = float(v.min()), float(v.max())
        t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        lut = _SEQUENTIAL
    pos = t * (len(lut) - 1)
    i = np.clip(np.floor(pos).astype(int), 0, len(lut) - 2)
    f = (pos - i)[..., None]
    return np.round(lut[i] * (1 - f) + lut[i + 1] * f).astype(np.uint8)


def hex_colour(value: float, scale: float) -> str:
    """The diverging colour of one value as #rrggbb (the token colours in --json)."""
    r, g, b = colours(np.array([value]), True, scale)[0]
    return f"#{r:02x}{g:02x}{b:02x}"


def _panel(rgb: np.ndarray):
    """(H, W, 3) uint8 -> a PANEL-sized image (nearest neighbour: pixels stay visible)."""
    from PIL import Image

    return Image.fromarray(rgb).resize((PANEL, PANEL), Image.Resampling.NEAREST)


def _grey_rgb(pixels: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    rgb = np.repeat(pixels, 3, axis=0) if pixels.shape[0] == 1 else pixels[:3]
    return np.round(np.clip(rgb, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)


def overlay(pixels: np.ndarray, amap: np.ndarray, signed: bool = True) -> np.ndarray:
    """The map's colours over a dimmed grey input, each pixel as opaque as its share of the largest value."""
    base = _grey_rgb(pixels).mean(axis=2, keepdims=True) * 0.6 + 40
    a = np.abs(amap) if signed else amap - amap.min()
    alpha = (a / (a.max() or 1.0))[..., None] * 0.85
    return np.round(base * (1 - alpha) + colours(amap, signed) * alpha).astype(np.uint8)


def image_rows(rows: list[dict], headers: list[str]) -> bytes:
    """A grid, one row per input: each row {"panels": [(H, W, 3) uint8, ...], "lines": [text, ...]}."""
    from PIL import Image, ImageDraw

    font, head = _font(12), 18
    text_w = 190
    cols = max(len(r["panels"]) for r in rows)
    width = PAD + cols * (PANEL + PAD) + text_w
    height = head + len(rows) * (PANEL + PAD) + PAD
    img = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(img)
    for k, title in enumerate(headers):
        draw.text((PAD + k * (PANEL + PAD), 3), title, fill=BLACK, font=font)
    for r, row in enumerate(rows):
        y = head + r * (PANEL + PAD)
        for k, rgb in enumerate(row["panels"]):
            img.paste(_panel(rgb), (PAD + k * (PANEL + PAD), y))
        for i, line in enumerate(row["lines"]):
            draw.text(
                (PAD + cols * (PANEL + PAD), y + 2 + 16 * i), line, fill=BLACK if i == 0 else GREY, font=font
            )
    return _png(img)


def bars(names: list[str], values: list[float], title: str, limit: int = 12) -> bytes:
    """Horizontal bars, the `limit` largest |values| first; red raises the score, blue lowers it."""
    from PIL import Image, ImageDraw

    font = _font(12)
    order = np.argsort(-np.abs(np.asarray(values)), kind="stable")[:limit]
    label_w, bar_w, row_h = 150, 260, 18
    img = Image.new("RGB", (label_w + bar_w + 90, 28 + row_h * len(order) + PAD), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((PAD, 6), title, fill=BLACK, font=font)
    top = float(np.abs(np.asarray(values)).max()) or 1.0
    zero = label_w + bar_w // 2
    for row, i in enumerate(order):
        y, v = 28 + row * row_h, float(values[i])
        draw.text((PAD, y), str(names[i])[:22], fill=BLACK, font=font)
        end = zero + int(v / top * (bar_w // 2 - 4))
        colour = tuple(int(c) for c in colours(np.array([v]), True, top)[0])
        draw.rectangle([min(zero, end), y + 2, max(zero, end), y + row_h - 4], fill=colour)
        draw.text((label_w + bar_w + 4, y), f"{v:+.3g}", fill=GREY, font=font)
    draw.line([zero, 26, zero, img.height - PAD], fill=GREY)
    return _png(img)


def series(window: list[float], forecast: list[float], values: list[float], title: str) -> bytes:
    """The input window (and forecast, dashed points) above a bar per past step."""
    from PIL import Image, ImageDraw

    font = _font(12)
    w, top_h, bar_h = 520, 150, 90
    img = Image.new("RGB", (w, 24 + top_h + bar_h + 3 * PAD), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((PAD, 4), title, fill=BLACK, font=font)
    ys = np.asarray(list(window) + list(forecast), dtype=np.float64)
    lo, hi = float(ys.min()), float(ys.max())
    span = hi - lo or 1.0
    step = (w - 2 * PAD - 20) / max(len(ys) - 1, 1)
    xy = [(PAD + 10 + i * step, 24 + top_h - (v - lo) / span * (top_h - 10)) for i, v in enumerate(ys)]
    draw.line(xy[: len(window)], fill=BLACK, width=2)
    for x, y in xy[len(window) :]:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(178, 24, 43), width=2)
    draw.text((PAD, 24 + top_h + PAD), "attribution of each past step", fill=GREY, font=font)
    mid = 24 + top_h + 2 * PAD + bar_h // 2
    scale = float(np.abs(np.asarray(values)).max()) or 1.0
    for i, v in enumerate(values):
        x = xy[i][0]
        end = mid - v / scale * (bar_h // 2 - 2)
        colour = tuple(int(c) for c in colours(np.array([v]), True, scale)[0])
        draw.rectangle([x - step * 0.4, min(mid, end), x + step * 0.4, max(mid, end)], fill=colour)
    draw.line([PAD, mid, w - PAD, mid], fill=GREY)
    return _png(img)


def tokens(words: list[str], values: list[float], title: str) -> bytes:
    """The tokens on backgrounds coloured by attribution, wrapped to lines."""
    from PIL import Image, ImageDraw

    font, w, line_h = _font(14), 520, 24
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    scale = float(np.abs(np.asarray(values)).max()) or 1.0
    boxes, x, y = [], PAD, 28
    for word, v in zip(words, values):
        tw = int(probe.textlength(word, font=font)) + 8
        if x + tw > w - PAD and x > PAD:
            x, y = PAD, y + line_h + 4
        boxes.append((x, y, tw, word, v))
        x += tw + 4
    img = Image.new("RGB", (w, y + line_h + PAD), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((PAD, 6), title, fill=BLACK, font=_font(12))
    for x, y, tw, word, v in boxes:
        colour = tuple(int(c) for c in colours(np.array([v]), True, scale)[0])
        draw.rectangle([x, y, x + tw, y + line_h], fill=colour)
        draw.text((x + 4, y + 4), word, fill=BLACK, font=font)
    return _png(img)


def stack(pngs: list[bytes]) -> bytes:
    """PNG pictures one under another (one file for several inputs)."""
    from PIL import Image

    if len(pngs) == 1:
        return pngs[0]
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), WHITE)
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    return _png(out)


def figure(meta: dict, items: list, results: list[dict]) -> bytes:
    """The picture of a list of results (inputs that failed are left out): one PNG."""
    pairs = [(row, r) for (_, row), r in zip(items, results) if "error" not in r]
    if not pairs:
        raise _core.InputError("no explanation to draw: every input failed")
    if "shape" in pairs[0][1]:
        return _image_figure(meta, pairs)
    pictures = []
    for _, r in pairs:
        title = f"{_short(r['input'])} · {r['method']} · {r['target']}"
        if "baseline_score" in r:  # where the attributions lead from (the training mean) and to (the input)
            title += f": {r['baseline_score']:.4g} at the mean -> {r['score']:.4g}"
        else:
            title += f" = {r['score']:.4g}"
        if "tokens" in r:
            pictures.append(tokens(r["tokens"], r["attributions"], title))
        elif "window" in r:
            pictures.append(series(r["window"], r.get("forecast", []), r["attributions"], title))
        else:
            pictures.append(bars(r["features"], r["attributions"], title))
    return stack(pictures)


def _image_figure(meta: dict, pairs: list) -> bytes:
    rows = []
    first = pairs[0][1]
    for row, r in pairs:
        px = _core.pixels(meta, row)
        amap = np.asarray(r["attributions"], dtype=np.float64)
        signed = r["task"] != "reconstruct"
        panels = [_grey_rgb(px)]
        if not signed:
            panels.append(_grey_rgb(np.asarray(r["reconstruction"], dtype=np.float64)))
        panels += [colours(amap, signed), overlay(px, amap, signed)]
        rows.append({"panels": panels, "lines": [_short(r["input"]), *_verdict(r)]})
    if first["task"] == "reconstruct":
        headers = ["input", "reconstruction", "squared error", "overlay"]
    else:
        headers = ["input", f"{first['method']} map", "overlay"]
    return image_rows(rows, headers)


def _short(name: str, limit: int = 28) -> str:
    """An input's name within `limit` characters: its file name (and index), else its tail."""
    import os

    base = os.path.basename(str(name)) or str(name)
    return base if len(base) <= limit else "..." + base[-(limit - 3) :]


def _verdict(r: dict) -> list[str]:
    """The text beside an image row: the prediction's top labels, or the anomaly verdict."""
    if r["task"] == "reconstruct":
        flag = {True: "ANOMALY", False: "normal", None: "no threshold"}[r["anomaly"]]
        threshold = [] if r["threshold"] is None else [f"threshold {r['threshold']:.3g}"]
        return [flag, f"score {r['score']:.3g}", *threshold]
    lines = [f"explains {r['target']}: {r['score']:.3f}"]
    lines += [f"  {t['label']}: {t['probability']:.3f}" for t in r.get("top", [])]
    return lines


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
