"""Pre- and post-processing of every toolkit model, driven by its `toolkit` metadata alone.

Raw inputs (image files or bytes, CSV rows, arrays, series values, texts, labels) become the rows the model
takes (resized, scaled and standardized as in training; tokenized; windowed); the outputs become answers
(label and probabilities, values in the target's units, forecasts, anomaly score and flag, images). One
implementation for `toolkit predict`, the server's V1 endpoint and the edge runner: `toolkit edge pack`
copies this file beside the bundle's runner.py, so it imports neither toolkit nor torch (numpy only; Pillow,
csv and base64 when an input needs them), and a device computes exactly what `toolkit predict` prints.

A bad input is an InputError naming it; read_inputs keeps it in its place, so the other inputs are still
answered.
"""

from __future__ import annotations

import os

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BATCH = 64  # rows per session run
MISSING = (
    "",
    "na",
    "nan",
    "null",
    "none",
)  # CSV cells read as a missing value (NaN -> 0 after standardizing)
WORD_PATTERN = r"\w+|[^\w\s]"  # toolkit's word-level tokenizer (toolkit/data/tokenizer.py)


class InputError(ValueError):
    """One input cannot be used: the message names it and says what is allowed."""


# --------------------------------------------------------------------------------------------- metadata
def input_kind(meta: dict) -> str:
    """What the model reads: image, tabular, series, tokens (text tokenized here), text (raw strings into the
    graph) or noise (a generator: labels in)."""
    port = meta["inputs"][0]
    pre = port.get("preprocessing") or {}
    if meta["task"] == "generate":
        return "noise"
    if port["dtype"] in ("string", "object"):
        return "text"
    if pre.get("type") == "tokenize":
        return "tokens"
    if "window" in pre:
        return "series"
    if pre.get("per") == "channel":
        return "image"
    return "tabular"


def preprocessing(meta: dict) -> dict:
    """The first input's preprocessing record (empty for a generator)."""
    return meta["inputs"][0].get("preprocessing") or {}


def image_geometry(meta: dict) -> tuple[int, int, int] | None:
    """(C, H, W) of the images the model was trained on (also for a flattened-image MLP), else None."""
    kind = input_kind(meta)
    img = preprocessing(meta).get("image") or {}
    if kind == "image" and all(isinstance(img.get(k), int) for k in ("channels", "height", "width")):
        return int(img["channels"]), int(img["height"]), int(img["width"])  # also NHWC or open H, W
    if kind == "image":
        return tuple(meta["inputs"][0]["shape"][1:])  # type: ignore[return-value]
    if kind == "tabular" and img.get("flattened"):
        return int(img["channels"]), int(img["height"]), int(img["width"])
    return None


def describe(meta: dict) -> str:
    """The kind of input in words, for messages ("28x28 grayscale image", "4 features", ...)."""
    kind = input_kind(meta)
    geom = image_geometry(meta)
    if geom is not None:
        c, h, w = geom
        return f"{w}x{h} {'grayscale' if c == 1 else 'RGB'} image"
    if kind == "tabular":
        return f"{len(feature_names(meta))} features"
    if kind == "series":
        return f"series (window of {preprocessing(meta)['window']} values)"
    if kind in ("tokens", "text"):
        return "text"
    return "generator"


def _width(meta: dict) -> int:
    return int(meta["inputs"][0]["shape"][1])


def feature_names(meta: dict) -> list[str]:
    """The names of the values a user gives: a table's raw columns (`{"job": "nurse", "age": 41}`) for a
    model with encoded columns, else the trained feature names (x0, x1, ... when the data had none)."""
    columns = table_columns(meta)
    if columns:
        return [c["name"] for c in columns]
    return encoded_names(meta)


def encoded_names(meta: dict) -> list[str]:
    """The names of the model's input features, one per input column (after any table encoding)."""
    return list(preprocessing(meta).get("feature_names") or [f"x{i}" for i in range(_width(meta))])


# --------------------------------------------------------------------------------------------- preprocessing
def standardize_images(meta: dict, x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) pixels in [0, 1] -> standardized per channel, as toolkit.data.preprocess.apply_spec."""
    pre = preprocessing(meta)
    mean = np.asarray(pre["mean"], dtype=np.float32)[None, :, None, None]
    std = np.asarray(pre["std"], dtype=np.float32)[None, :, None, None]
    out = (x.astype(np.float32) - mean) / std
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def standardize_features(meta: dict, x: np.ndarray) -> np.ndarray:
    """(N, F) features in their own units -> standardized per feature; a missing value (NaN) becomes 0."""
    pre = preprocessing(meta)
    mean = np.asarray(pre["mean"], dtype=np.float32)
    std = np.asarray(pre["std"], dtype=np.float32)
    out = (x.astype(np.float32) - mean) / std
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


RESIZE_POLICIES = ("crop", "letterbox", "stretch")  # data.resize: how a photo becomes the trained square


def resize_policy(meta_or_image: dict) -> str:
    """The recorded resize policy (image.resize); models from before policies were recorded stretch."""
    image = (
        meta_or_image if "inputs" not in meta_or_image else (preprocessing(meta_or_image).get("image") or {})
    )
    policy = image.get("resize")
    return policy if policy in RESIZE_POLICIES else "stretch"


def resize_plan(width: int, height: int, size: int, policy: str) -> tuple[int, int, int, int]:
    """How a WIDTHxHEIGHT image becomes SIZExSIZE: (resized width, resized height, left, top), where left/top
    are where the SIZE square starts inside the resized image (crop, >= 0) or where the resized image starts
    inside the square (letterbox: its padding). One arithmetic for training (toolkit.data.image_decode, on
    torchvision) and every runtime (Pillow, below), so both cut and pad the same pixels.

    crop: the shorter side to SIZE, then the centre SIZE square; letterbox: the longer side to SIZE, centred
    on a black square; stretch: both sides to SIZE (the aspect ratio is not kept)."""
    if policy == "stretch":
        return size, size, 0, 0
    short, long = min(width, height), max(width, height)
    if policy == "crop":
        new_short, new_long = size, max(size, int(size * long / short))
    else:  # letterbox
        new_short, new_long = max(1, int(size * short / long)), size
    nw, nh = (new_short, new_long) if width <= height else (new_long, new_short)
    return nw, nh, abs(nw - size) // 2, abs(nh - size) // 2


def fit_image(im, size: int, policy: str):
    """A Pillow image -> SIZExSIZE by the resize policy (bilinear, as training's antialiased resize)."""
    from PIL import Image

    nw, nh, left, top = resize_plan(im.width, im.height, size, policy)
    if im.size != (nw, nh):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    if policy == "crop":
        return im.crop((left, top, left + size, top + size))
    if policy == "letterbox":
        canvas = Image.new(im.mode, (size, size))  # black padding
        canvas.paste(im, (left, top))
        return canvas
    return im


def open_pixels(data: bytes, channels: int, size: int | None, policy: str) -> np.ndarray:
    """PNG/JPEG/... bytes -> (C, SIZE, SIZE) uint8 in the trained channels (L or RGB) and resize policy.
    Raises InputError when the bytes are not a readable image."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is refused, not decoded
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                im = im.convert("L" if channels == 1 else "RGB")
                if size:
                    im = fit_image(im, size, policy)
                arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise InputError("cannot decode the image: not a PNG or JPEG file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError("cannot decode the image: too many pixels (a decompression-bomb guard)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode the image ({one_line(exc) or exc.__class__.__name__})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_image(data: bytes, meta: dict) -> np.ndarray:
    """PNG/JPEG bytes -> (C, H, W) float32 pixels in [0, 1], converted to the trained channels and brought to
    the trained size by the recorded resize policy, exactly as training's image-folder reader does."""
    c, h, w = image_geometry(meta) or (0, 0, 0)
    policy = resize_policy(meta)
    if policy == "stretch" or h != w:
        arr = open_pixels(data, c, None, "stretch")
        if arr.shape[1:] != (h, w):  # models from before policies: resized to (W, H) as they were trained
            arr = _stretch(arr, w, h)
        return arr.astype(np.float32) / 255.0
    return open_pixels(data, c, h, policy).astype(np.float32) / 255.0


def _stretch(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    out = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def pixel_array(meta: dict, x: np.ndarray) -> np.ndarray:
    """A numeric image array -> pixels in [0, 1]: uint8 arrays are 8-bit pixels, other arrays are in the
    units of the training data (scaled by the recorded image.pixel_scale, e.g. 1/16 for builtin:digits)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    scale = (preprocessing(meta).get("image") or {}).get("pixel_scale") or 1.0
    return x.astype(np.float32) * scale


def image_rows(meta: dict, x: np.ndarray, what: str) -> tuple[list[np.ndarray], bool]:
    """Rows of an image array: (C, H, W), (H, W) for one channel, or a batch of either -> (C, H, W) each,
    and whether the array was a batch."""
    c, h, w = image_geometry(meta)  # type: ignore[misc]
    if x.shape == (c, h, w) or (c == 1 and x.shape == (h, w)):
        return [x.reshape(c, h, w)], False
    if x.ndim >= 3 and (x.shape[1:] == (c, h, w) or (c == 1 and x.shape[1:] == (h, w))):
        return [row.reshape(c, h, w) for row in x], True
    shape = f"({c}, {h}, {w})"
    raise InputError(f"{what} has shape {list(x.shape)}; the model takes {shape} images or a batch (N, ...)")


def feature_row(meta: dict, values: list, what: str) -> np.ndarray:
    """A list of numbers (None, '' or 'nan' for a missing value) -> one float32 feature row."""
    n = _width(meta)
    if len(values) != n:
        raise InputError(f"{what} has {len(values)} values; the model takes {n} ({_names_hint(meta)})")
    row = np.empty(n, dtype=np.float32)
    for i, v in enumerate(values):
        row[i] = _number(v, f"{what}, value {i + 1}", missing_ok=True)
    return row


def _names_hint(meta: dict) -> str:
    names = feature_names(meta)
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _number(v, what: str, missing_ok: bool) -> float:
    if v is None or (isinstance(v, str) and v.strip().lower() in MISSING):
        if missing_ok:
            return float("nan")
        raise InputError(f"{what} is missing")
    if isinstance(v, bool) or not isinstance(v, (int, float, str, np.number)):
        raise InputError(f"{what} is {type(v).__name__}, not a number")
    try:
        return float(v)
    except ValueError:
        raise InputError(f"{what} is {v!r}, not a number") from None


def series_row(meta: dict, values, what: str) -> np.ndarray:
    """Raw series values, oldest first -> the last `window` values standardized, (window, 1) float32, as
    toolkit.data.series windows are (float64 arithmetic, then float32)."""
    pre = preprocessing(meta)
    window = int(pre["window"])
    v = np.asarray([_number(x, f"{what}, value {i + 1}", missing_ok=False) for i, x in enumerate(values)])
    if len(v) < window:
        raise InputError(
            f"{what} has {len(v)} values; the model needs the last {window} values of the series"
        )
    if not np.isfinite(v).all():
        raise InputError(f"{what} has a missing or infinite value")
    x = v[-window:].astype(np.float64)
    return ((x - float(pre["mean"])) / float(pre["std"]))[:, None].astype(np.float32)


class Tokenizer:
    """toolkit's tokenizer (toolkit/data/tokenizer.py) from its JSON document: lower-casing, then word
    (regular expression), space (runs of spaces) or char splitting; id 1 for unknown tokens."""

    def __init__(self, doc: dict) -> None:
        self.level, self.lowercase = doc["level"], doc["lowercase"]
        self.max_length = int(doc["max_length"])
        self.unk = int(doc.get("unk_id", 1))
        self.index = {tok: i for i, tok in enumerate(doc["vocab"])}

    def split(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.level == "char":
            return [c for c in text if not c.isspace() or c == " "]
        if self.level == "space":
            return [t for t in text.split(" ") if t]
        import re

        return re.findall(WORD_PATTERN, text)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(t, self.unk) for t in self.split(text)][: self.max_length]


def text_row(meta: dict, text, what: str):
    """A text -> token ids (tokens models) or the string itself (raw-string models); empty text is refused."""
    if not isinstance(text, str):
        raise InputError(f"{what} is {type(text).__name__}; a text model takes a string")
    if not text.strip():
        raise InputError(f"{what} is an empty text")
    if input_kind(meta) == "text":
        return text
    return Tokenizer(preprocessing(meta)["tokenizer"]).encode(text)


def label_index(meta: dict, label, what: str) -> int:
    """A class to generate: a label name or its index."""
    labels = meta.get("labels") or []
    text = str(label).strip()
    if text in labels:
        return labels.index(text)
    if text.isdigit() and int(text) < len(labels):
        return int(text)
    shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
    raise InputError(
        f"{what}: label {text!r} is not one of the model's: {shown} (or an index 0-{len(labels) - 1})"
    )


def prepare_instance(meta: dict, instance, what: str):
    """One raw instance (the KServe V1 `instances` forms) -> one preprocessed row.

    list of numbers: a feature row (tabular), a raw series (forecast: its last window is used) or pixels in
    the training data's units (images; (C, H, W), (H, W) or flat); str: a text (text models) or a label
    (generators); {"b64": "..."}: PNG/JPEG bytes, base64; an int: a label index (generators)."""
    kind = input_kind(meta)
    if kind in ("tokens", "text"):
        return text_row(meta, instance, what)
    if kind == "noise":
        if isinstance(instance, dict):
            instance = instance.get("label")
        return label_index(meta, instance, what)
    if (
        isinstance(instance, dict)
        and "b64" not in instance
        and kind == "tabular"
        and not image_geometry(meta)
    ):
        return table_row(meta, instance, what)
    if isinstance(instance, dict):
        if "b64" not in instance:
            raise InputError(
                f"{what} is an object without a 'b64' key; images are {{\"b64\": base64 PNG/JPEG}}"
            )
        if image_geometry(meta) is None:
            raise InputError(f"{what} is an image; this model takes {describe(meta)}")
        import base64
        import binascii

        try:
            data = base64.b64decode(instance["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InputError(f"{what}: 'b64' is not valid base64") from None
        try:
            return image_to_row(meta, decode_image(data, meta))
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None
    if isinstance(instance, str):
        raise InputError(f"{what} is a string; this model takes {describe(meta)}")
    if not isinstance(instance, (list, tuple)):
        raise InputError(f"{what} is {type(instance).__name__}; this model takes {describe(meta)}")
    if kind == "series":
        return series_row(meta, instance, what)
    geom = image_geometry(meta)
    if kind == "image" or (geom is not None and _nested(instance)):
        try:
            x = np.asarray(instance, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{what} is not a numeric array") from None
        if x.ndim == 1 and x.size == int(np.prod(geom)):
            x = x.reshape(geom)
        rows, batched = image_rows(meta, x, what)
        if batched:
            raise InputError(f"{what} is a batch of images; give one image per instance")
        return image_to_row(meta, pixel_array(meta, rows[0]))
    if table_columns(meta):
        return table_row(meta, list(instance), what)
    return standardize_features(meta, feature_row(meta, list(instance), what)[None])[0]


def _nested(value) -> bool:
    return bool(value) and isinstance(value[0], (list, tuple))


def image_to_row(meta: dict, pixels: np.ndarray) -> np.ndarray:
    """(C, H, W) pixels in [0, 1] -> the model's row: standardized per channel, or flattened and standardized
    per feature for a model trained on flattened images."""
    if input_kind(meta) == "image":
        return standardize_images(meta, pixels[None])[0]
    return standardize_features(meta, pixels.reshape(1, -1))[0]


def batch_feeds(meta: dict, rows: list, seed: int = 0) -> dict:
    """Preprocessed rows -> {input name: array}: stacked, token ids right-padded with 0 to the longest text,
    raw strings as a string array, generator labels with noise drawn from `seed`."""
    kind = input_kind(meta)
    ports = meta["inputs"]
    if kind == "tokens":
        width = max(max((len(r) for r in rows), default=1), 1)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        return {ports[0]["name"]: ids}
    if kind == "text":
        return {ports[0]["name"]: np.array(rows, dtype=object)}
    if kind == "noise":
        z_port = next(p for p in ports if p["dtype"].startswith("float"))
        label_port = next(p for p in ports if p["dtype"].startswith("int"))
        latent = int(z_port["shape"][1])
        z = np.random.default_rng(seed).standard_normal((len(rows), latent)).astype(np.float32)
        return {z_port["name"]: z, label_port["name"]: np.asarray(rows, dtype=np.int64)}
    return {ports[0]["name"]: model_layout(meta, np.stack(rows).astype(np.float32))}


def model_layout(meta: dict, x: np.ndarray) -> np.ndarray:
    """Preprocessed images (N, C, H, W), RGB -> the layout and channel order the model's input declares
    (an imported model may take NHWC or BGR); anything else passes unchanged."""
    if input_kind(meta) != "image" or x.ndim != 4:
        return x
    if (preprocessing(meta).get("image") or {}).get("color_order") == "BGR":
        x = x[:, ::-1]
    if meta["inputs"][0].get("layout") == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x)


def from_model_layout(meta: dict, x: np.ndarray) -> np.ndarray:
    """The inverse of model_layout: a batch as the model takes it -> (N, C, H, W), RGB."""
    if input_kind(meta) != "image" or x.ndim != 4:
        return x
    if meta["inputs"][0].get("layout") == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    if (preprocessing(meta).get("image") or {}).get("color_order") == "BGR":
        x = x[:, ::-1]
    return np.ascontiguousarray(x)


# --------------------------------------------------------------------------------------------- tables
# A model trained on a table with categorical columns or missing values records its columns in the input's
# preprocessing ("columns"); its input is one float row laid out as
#   [numeric values and their is-missing indicators, one-hot blocks]  (standardized: (x - mean) / std)
#   [one category code per embedding column]                          (mean 0, std 1: codes pass unchanged)
# A category column's codes are 0..L-1 for its trained levels, L for "other" (a level not seen in training,
# or beyond data.max_levels), L + 1 for a missing value. The graph casts the codes to integers and looks up
# its embeddings; everything before that happens here, so predict, the server and the edge runner share it.
def table_columns(meta: dict) -> list[dict] | None:
    """The table's columns as trained ({"name", "kind": "numeric" | "category", ...}), or None for a model
    whose features are all numeric without missing values in training."""
    return preprocessing(meta).get("columns")


def level_text(value) -> str | None:
    """A raw category value -> its level text (None: missing). Numbers are written as CSV readers write
    them (41.0 -> "41"), booleans as "true"/"false", so JSON and CSV values meet the same levels."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    text = str(value).strip()
    return None if text.lower() in MISSING else text


def category_codes(column: dict, values) -> np.ndarray:
    """Raw values of one category column -> int64 codes (see the layout above). `values` is a sequence, or
    (dictionary, indices) as a column store gives it: index i of the dictionary, -1 for a missing value."""
    levels = column["levels"]
    index = {v: i for i, v in enumerate(levels)}
    other, missing = len(levels), len(levels) + 1

    def code(v) -> int:
        text = level_text(v)
        return missing if text is None else index.get(text, other)

    if isinstance(values, tuple):
        dictionary, indices = values
        lut = np.array([code(v) for v in dictionary] + [missing], dtype=np.int64)
        return lut[np.asarray(indices)]  # index -1 picks the last entry: missing
    return np.array([code(v) for v in values], dtype=np.int64)


def numeric_values(name: str, values, what: str) -> np.ndarray:
    """Raw values of one numeric column -> float64 (NaN: missing); a non-number is an InputError."""
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.number):
        return values.astype(np.float64)
    if isinstance(values, tuple):
        dictionary, indices = values
        lut = np.array([_number(v, f"{what} {name!r}", missing_ok=True) for v in dictionary] + [np.nan])
        return lut[np.asarray(indices)]
    return np.array([_number(v, f"{what} {name!r}", missing_ok=True) for v in values], dtype=np.float64)


def encode_table(meta: dict, columns: dict, what: str = "input") -> np.ndarray:
    """Raw table columns ({name: values}, every trained column) -> the model's rows (N, F) float32, standardized
    as trained; a missing numeric value becomes the train mean (0) with its indicator set to 1."""
    return standardize_features(meta, table_values(meta, columns, what))


def table_values(meta: dict, columns: dict, what: str = "input") -> np.ndarray:
    """Raw table columns -> (N, F) float32 in the layout above, before standardizing (NaN: missing number)."""
    dense, codes = [], []
    for col in table_columns(meta) or []:
        values = columns[col["name"]]
        if col["kind"] == "numeric":
            v = numeric_values(col["name"], values, what)
            dense.append(v.astype(np.float32))
            if col.get("indicator"):
                dense.append(np.isnan(v).astype(np.float32))
            continue
        c = category_codes(col, values)
        if col["encoding"] == "embedding":
            codes.append(c.astype(np.float32))
        else:  # one-hot: one column per level, "other" and missing
            dense.extend((c == k).astype(np.float32) for k in range(len(col["levels"]) + 2))
    return np.stack(dense + codes, axis=1)


def table_row(meta: dict, instance, what: str) -> np.ndarray:
    """One raw row -> the model's row: a dict by column name (every trained column; null for a missing value;
    the target and columns dropped in training are ignored) or a list of values in the trained column order."""
    names = feature_names(meta)
    if isinstance(instance, dict):
        ignored = set(preprocessing(meta).get("ignored") or ())
        absent = [n for n in names if n not in instance]
        extra = [str(k) for k in instance if k not in names and k not in ignored]
        if absent or extra:
            problem = f"lacks {_quoted(absent)}" if absent else f"has unknown keys {_quoted(extra)}"
            raise InputError(
                f"{what} {problem}; the model takes {_names_hint(meta)} (null for a missing value)"
            )
        values = [instance[n] for n in names]
    else:
        values = list(instance)
        if len(values) != len(names):
            raise InputError(
                f"{what} has {len(values)} values; the model takes {len(names)} ({_names_hint(meta)})"
            )
    if not table_columns(meta):
        return standardize_features(meta, feature_row(meta, values, what)[None])[0]
    for v, name in zip(values, names):
        if isinstance(v, (list, dict)):
            raise InputError(f"{what}: {name!r} is a {type(v).__name__}; give one value per column")
    return encode_table(meta, {n: [v] for n, v in zip(names, values)}, what)[0]


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")


def example_rows(meta: dict, n: int = 3) -> list[dict]:
    """Raw rows a table model accepts (for bundles' samples and docs): numbers near the train mean, the most
    frequent trained levels, then an unseen level and a missing value."""
    names, rows = feature_names(meta), []
    columns = table_columns(meta) or [{"name": name, "kind": "numeric"} for name in names]
    pre = preprocessing(meta)
    positions = column_positions(columns)
    for k in range(n):
        row = {}
        for col, pos in zip(columns, positions):
            if col["kind"] == "numeric":
                mean, std = float(pre["mean"][pos]), float(pre["std"][pos])
                row[col["name"]] = round(mean + (k - 1) * 0.5 * std, 6)
            else:
                levels = col["levels"]
                row[col["name"]] = levels[k] if k < len(levels) else None
        rows.append(row)
    return rows


def column_positions(columns: list[dict]) -> list[int]:
    """Each column's first position in the encoded row (category codes of embedding columns come last)."""
    positions, pos = [], 0
    for col in columns:
        positions.append(pos)
        if col["kind"] == "numeric":
            pos += 2 if col.get("indicator") else 1
        elif col.get("encoding") != "embedding":
            pos += len(col["levels"]) + 2
    return positions


# --------------------------------------------------------------------------------------------- postprocessing
def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def task_outputs(meta: dict, outputs: dict) -> dict:
    """The graph's outputs under the names the toolkit reads (logits, probabilities, prediction): an
    imported model's ports say which output serves `as` which, and what to `apply` to get probabilities
    (softmax, sigmoid: one column for two labels means p(second label)). Exported models pass unchanged."""
    out = dict(outputs)
    for port in meta.get("outputs") or []:
        role, value = port.get("as"), outputs.get(port["name"])
        if role is None or value is None or role == "label":
            continue
        out[role] = value
        apply = port.get("apply")
        if role == "logits" and apply == "sigmoid":
            p = sigmoid(value)
            out["probabilities"] = np.concatenate([1 - p, p], axis=1) if p.shape[1] == 1 else p
            out["logits"] = np.log(np.clip(out["probabilities"], 1e-12, None))
        elif role == "logits":
            out["probabilities"] = softmax(value)
        elif role == "probabilities":
            out["logits"] = np.log(np.clip(value.astype(np.float64), 1e-12, None))
    return out


def predictions(meta: dict, outputs: dict, top_k: int | None = None, labels_in: list | None = None) -> list:
    """Outputs of one batch -> one JSON-able dict per row, by task: label + probabilities (classify), value
    (regress), forecast (in the series' units), score + anomaly flag (reconstruct), image (generate)."""
    task = meta["task"]
    outputs = task_outputs(meta, outputs)
    if meta.get("role") == "encoder":  # an autoencoder's encoder: the latent code is the answer
        return [
            {"code": [float(v) for v in r]} for r in outputs[meta["outputs"][0]["name"]].astype(np.float64)
        ]
    if task == "classify":
        probs = outputs.get("probabilities")
        probs = softmax(outputs["logits"]) if probs is None else probs.astype(np.float64)
        labels = meta.get("labels") or [str(i) for i in range(probs.shape[1])]
        k = len(labels) if not top_k else min(top_k, len(labels))
        rows = []
        for p in probs:
            order = np.argsort(-p, kind="stable")[:k]
            best = int(np.argmax(p))
            rows.append(
                {
                    "label": labels[best],
                    "probability": round(float(p[best]), 6),
                    "probabilities": {labels[i]: round(float(p[i]), 6) for i in order},
                }
            )
        return rows
    if task == "regress":
        pred = outputs["prediction"].astype(np.float64)
        return [{"value": float(r[0]) if r.size == 1 else [float(v) for v in r]} for r in pred]
    if task == "forecast":
        return [{"forecast": [float(v) for v in r]} for r in outputs["forecast"].astype(np.float64)]
    if task == "reconstruct":
        threshold = ((meta.get("thresholds") or {}).get("score") or {}).get("value")
        rows = []
        for s in outputs["score"].astype(np.float64).reshape(-1):
            rows.append(
                {
                    "score": float(s),
                    "anomaly": None if threshold is None else bool(s > threshold),
                    "threshold": threshold,
                }
            )
        return rows
    if task == "generate":
        labels = meta.get("labels") or []
        images = outputs[meta["outputs"][0]["name"]]
        idx = labels_in if labels_in is not None else [None] * len(images)
        return [
            {
                "label": labels[i] if i is not None and i < len(labels) else None,
                "image": {"b64": _b64(png_bytes(img))},
            }
            for img, i in zip(images, idx)
        ]
    raise InputError(f"unknown task {task!r} in the model's metadata")


def png_bytes(img: np.ndarray) -> bytes:
    """(C, H, W) in [0, 1] -> 8-bit grayscale or RGB PNG bytes (as `toolkit generate` writes them)."""
    import io

    from PIL import Image

    pixels = np.round(np.clip(img, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(images: np.ndarray, columns: int = 8, pad: int = 2) -> bytes:
    """(N, C, H, W) in [0, 1] -> one PNG grid, `columns` images a row, `pad` pixels between them."""
    n, c, h, w = images.shape
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    grid = np.ones((c, rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, y : y + h, x : x + w] = img
    return png_bytes(grid)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------- reading inputs
def accepted_suffixes(meta: dict) -> tuple[str, ...]:
    kind = input_kind(meta)
    if kind == "image":
        return (*IMAGE_SUFFIXES, ".npy", ".npz")
    if kind == "tabular":
        extra = IMAGE_SUFFIXES if image_geometry(meta) else ()
        return (".csv", ".npy", ".npz", *extra)
    if kind == "series":
        return (".csv", ".txt", ".npy")
    if kind in ("tokens", "text"):
        return (".txt", ".csv")
    return ()


def read_inputs(meta: dict, paths: list[str], texts: list[str] = ()) -> list[tuple[str, object]]:
    """Files, folders, --text strings (and labels, for a generator) -> [(name, row or InputError)], one
    entry per answer: an image, a CSV row, a text line, a series."""
    items: list[tuple[str, object]] = []
    if input_kind(meta) == "noise":
        for label in [*paths, *texts]:
            items.append((str(label), _guard(lambda lab=label: label_index(meta, lab, "input"))))
        return items
    for p in paths:
        if os.path.isdir(p):
            files = _folder_files(p, accepted_suffixes(meta))
            if not files:
                err = InputError(f"{p}: no inputs found (looked for {', '.join(accepted_suffixes(meta))})")
                items.append((p, err))
            for f in files:
                items.extend(_read_file(meta, f))
        else:
            items.extend(_read_file(meta, p))
    for i, text in enumerate(texts, start=1):
        name = f"--text #{i}"
        items.append((name, _guard(lambda t=text, n=name: text_row(meta, t, n))))
    return items


def _guard(fn):
    try:
        return fn()
    except InputError as exc:
        return exc


def _folder_files(root: str, suffixes: tuple[str, ...]) -> list[str]:
    found = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        found += [os.path.join(d, f) for f in files if f.lower().endswith(suffixes) and not f.startswith(".")]
    return sorted(found)


def _read_file(meta: dict, path: str) -> list[tuple[str, object]]:
    """One file -> its items; a file that cannot be read at all is one item holding the error."""
    suffix = os.path.splitext(path)[1].lower()
    allowed = accepted_suffixes(meta)
    if not os.path.exists(path):
        return [(path, InputError(f"{path}: no such file or folder"))]
    if suffix not in allowed:
        what = f"a {suffix} file" if suffix else "a file without a suffix"
        why = f"{path}: {what} is not an input for this {describe(meta)} model; it takes {', '.join(allowed)}"
        return [(path, InputError(why))]
    try:
        if suffix in IMAGE_SUFFIXES:
            with open(path, "rb") as f:
                data = f.read()
            try:
                return [(path, image_to_row(meta, decode_image(data, meta)))]
            except InputError as exc:
                return [(path, InputError(f"{path}: {exc}"))]
        if suffix in (".npy", ".npz"):
            return _read_array_file(meta, path, suffix)
        if suffix == ".csv":
            return _read_csv(meta, path)
        return _read_txt(meta, path)
    except OSError as exc:
        return [(path, InputError(f"{path}: cannot read it ({exc.strerror or exc})"))]


def _read_array_file(meta: dict, path: str, suffix: str) -> list[tuple[str, object]]:
    try:
        if suffix == ".npy":
            arrays = [(path, np.load(path, allow_pickle=False))]
        else:
            with np.load(path, allow_pickle=False) as z:
                keys = ["x"] if "x" in z.files else list(z.files)
                arrays = [(f"{path}:{k}", z[k]) for k in keys]
    except (ValueError, OSError, EOFError) as exc:
        return [(path, InputError(f"{path}: not a readable {suffix} array ({one_line(exc)})"))]
    items: list[tuple[str, object]] = []
    for name, x in arrays:
        if not np.issubdtype(x.dtype, np.number):
            items.append((name, InputError(f"{name}: a {x.dtype} array; the model takes numbers")))
            continue
        try:
            items.extend(_array_items(meta, name, x))
        except InputError as exc:
            items.append((name, exc))
    return items


def _array_items(meta: dict, name: str, x: np.ndarray) -> list[tuple[str, object]]:
    kind = input_kind(meta)
    if kind == "series":
        if x.ndim == 1:
            return [(name, series_row(meta, x.tolist(), name))]
        if x.ndim == 2:
            return [
                (f"{name}[{i}]", _guard(lambda r=r, i=i: series_row(meta, r.tolist(), f"{name}[{i}]")))
                for i, r in enumerate(x)
            ]
        raise InputError(f"{name} has shape {list(x.shape)}; a series is 1-D (or 2-D: one window a row)")
    geom = image_geometry(meta)
    if kind == "image" or (geom is not None and x.ndim >= 2 and x.shape[-1] != _width(meta)):
        rows, batched = image_rows(meta, x, name)
        names = [f"{name}[{i}]" for i in range(len(rows))] if batched else [name]
        return [(n, image_to_row(meta, pixel_array(meta, r))) for n, r in zip(names, rows)]
    if table_columns(meta):  # raw rows of the trained columns, numbers only (categories as numbers)
        rows = [x] if x.ndim == 1 else list(x) if x.ndim == 2 else []
        if not rows or len(rows[0]) != len(feature_names(meta)):
            raise InputError(f"{name} has shape {list(x.shape)}; the model takes rows of {_names_hint(meta)}")
        names = [name] if x.ndim == 1 else [f"{name}[{i}]" for i in range(len(rows))]
        return [(n, _guard(lambda r=r, n=n: table_row(meta, r.tolist(), n))) for n, r in zip(names, rows)]
    width = _width(meta)
    if x.ndim == 1 and x.shape[0] == width:
        return [(name, standardize_features(meta, x.astype(np.float32)[None])[0])]
    if x.ndim == 2 and x.shape[1] == width:
        std = standardize_features(meta, x.astype(np.float32))
        return [(f"{name}[{i}]", r) for i, r in enumerate(std)]
    raise InputError(
        f"{name} has shape {list(x.shape)}; the model takes rows of {width} features ({_names_hint(meta)})"
    )


def _read_txt(meta: dict, path: str) -> list[tuple[str, object]]:
    with open(path, encoding="utf-8-sig", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError:
            return [(path, InputError(f"{path}: not UTF-8 text"))]
    if input_kind(meta) == "series":
        values = [v for v in (line.strip() for line in lines) if v]
        return [(path, _guard(lambda: series_row(meta, values, path)))]
    if not lines:
        return [(path, InputError(f"{path}: an empty file (one text per line expected)"))]
    return [
        (f"{path}:{i}", _guard(lambda t=t, i=i: text_row(meta, t, f"{path}:{i}")))
        for i, t in enumerate(lines, start=1)
    ]


def _read_csv(meta: dict, path: str) -> list[tuple[str, object]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, r) for i, r in enumerate(csv.reader(f), start=1) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        return [(path, InputError(f"{path}: not a readable UTF-8 CSV file ({one_line(exc)})"))]
    if not rows:
        return [(path, InputError(f"{path}: an empty CSV file"))]
    kind = input_kind(meta)
    if kind in ("tokens", "text"):
        return _csv_texts(meta, path, rows)
    if kind == "series":
        return [(path, _guard(lambda: _csv_series(meta, path, rows)))]
    return _csv_features(meta, path, rows)


def _is_header(row: list[str]) -> bool:
    for cell in row:
        c = cell.strip()
        if c.lower() in MISSING:
            continue
        try:
            float(c)
        except ValueError:
            return True
    return False


def _csv_features(meta: dict, path: str, rows: list) -> list[tuple[str, object]]:
    """Feature rows: with a header naming the model's features, those columns (others, such as the target,
    are ignored); otherwise every row must have exactly the model's number of columns."""
    if table_columns(meta):
        return _csv_table(meta, path, rows)
    names, width = feature_names(meta), _width(meta)
    columns = list(range(width))
    expected = f"the model takes {width} features ({_names_hint(meta)})"
    fields = width
    if _is_header(rows[0][1]):
        header = [h.strip() for h in rows[0][1]]
        rows = rows[1:]
        if all(n in header for n in names):
            columns = [header.index(n) for n in names]
        elif len(header) != width:
            return [(path, InputError(f"{path}: its header has {len(header)} columns; {expected}"))]
        if not rows:
            return [(path, InputError(f"{path}: a header but no data rows"))]
        fields, expected = len(header), f"the header has {len(header)}"
    items: list[tuple[str, object]] = []
    for line, r in rows:
        name = f"{path}:{line}"
        if len(r) != fields:
            items.append((name, InputError(f"{name}: the row has {len(r)} columns, {expected}")))
            continue
        try:
            row = feature_row(meta, [r[c] for c in columns], name)
        except InputError as exc:
            items.append((name, exc))
            continue
        items.append((name, standardize_features(meta, row[None])[0]))
    return items


def _csv_table(meta: dict, path: str, rows: list) -> list[tuple[str, object]]:
    """Raw table rows: with a header naming every trained column (other columns, such as the target, are
    ignored), else rows of exactly the trained columns in their order."""
    names = feature_names(meta)
    header = [h.strip() for h in rows[0][1]]
    columns, fields = list(range(len(names))), len(names)
    if set(names) <= set(header):
        columns, fields, rows = [header.index(n) for n in names], len(header), rows[1:]
        if not rows:
            return [(path, InputError(f"{path}: a header but no data rows"))]
    elif len(set(header) & set(names)) > len(names) // 2:  # a header, short of some columns
        absent = [n for n in names if n not in header]
        return [
            (
                path,
                InputError(
                    f"{path}: its header lacks {_quoted(absent)}; the model takes {_names_hint(meta)}"
                ),
            )
        ]
    items: list[tuple[str, object]] = []
    for line, r in rows:
        name = f"{path}:{line}"
        if len(r) != fields:
            items.append((name, InputError(f"{name}: the row has {len(r)} columns, expected {fields}")))
            continue
        items.append((name, _guard(lambda r=r, n=name: table_row(meta, [r[c] for c in columns], n))))
    return items


def _csv_series(meta: dict, path: str, rows: list) -> np.ndarray:
    """The series column (the trained series' name, else the last column) -> the last window."""
    col = -1
    if _is_header(rows[0][1]):
        header = [h.strip() for h in rows[0][1]]
        name = preprocessing(meta).get("series_name")
        col = header.index(name) if name in header else len(header) - 1
        rows = rows[1:]
    values = []
    for line, r in rows:
        try:
            values.append(r[col])
        except IndexError:
            raise InputError(f"{path}:{line}: the row has no column {col + 1}") from None
    return series_row(meta, values, path)


def _csv_texts(meta: dict, path: str, rows: list) -> list[tuple[str, object]]:
    """Texts from the trained text column (or the only column) of a CSV with a header."""
    header = [h.strip() for h in rows[0][1]]
    column = ((meta.get("recipe") or {}).get("data") or {}).get("text_column") or "text"
    if column in header:
        col = header.index(column)
    elif len(header) == 1:
        col = 0
    else:
        return [(path, InputError(f"{path}: no {column!r} column; columns: {', '.join(header)}"))]
    items: list[tuple[str, object]] = []
    for line, r in rows[1:]:
        name = f"{path}:{line}"
        if len(r) != len(header):
            items.append(
                (name, InputError(f"{name}: the row has {len(r)} columns, the header has {len(header)}"))
            )
            continue
        items.append((name, _guard(lambda t=r[col], n=name: text_row(meta, t, n))))
    return items


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (the bundle's own copy of toolkit.errors.one_line: this file ships
    without toolkit)."""
    return " ".join(str(exc).split())[:200]


# --------------------------------------------------------------------------------------------- running
def run_items(run, meta: dict, items: list, top_k: int | None = None, seed: int = 0) -> list[dict]:
    """Answer every item that was read: `run(feeds) -> outputs` in batches of BATCH; items holding an error
    are reported as {"input", "error"} in their place. Returns one result dict per item, in order."""
    results: list[dict | None] = [None] * len(items)
    good = [(i, row) for i, (_, row) in enumerate(items) if not isinstance(row, InputError)]
    for start in range(0, len(good), BATCH):
        chunk = good[start : start + BATCH]
        rows = [row for _, row in chunk]
        outputs = run(batch_feeds(meta, rows, seed + start))
        preds = predictions(meta, outputs, top_k, rows if input_kind(meta) == "noise" else None)
        for (i, _), pred in zip(chunk, preds):
            results[i] = {"input": items[i][0], **pred}
    for i, (name, row) in enumerate(items):
        if isinstance(row, InputError):
            results[i] = {"input": name, "error": str(row)}
    return results  # type: ignore[return-value]


def generated_images(results: list[dict]) -> np.ndarray:
    """The images of generator results, decoded back to (N, C, H, W) in [0, 1] (for the PNG grid)."""
    import base64
    import io

    from PIL import Image

    out = []
    for r in results:
        if "image" in r:
            with Image.open(io.BytesIO(base64.b64decode(r["image"]["b64"]))) as im:
                a = np.asarray(im, dtype=np.float32) / 255.0
            out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(out)
