"""Explanations as text for a terminal: a heading per input, then the map, the features, the steps or the
tokens, coloured with 24-bit ANSI backgrounds (blue lowers the score, red raises it) or, without colour,
as signed numbers and a character ramp. Shared by `toolkit explain` and `runner.py explain`.
"""

from __future__ import annotations

import numpy as np

from .plots import colours

RESET = "\033[0m"
RAMP = " .:-=+*#%@"  # |value| from none to the largest, without colour
MAX_COLUMNS = 32  # a map wider than this is averaged down in blocks


def render(result: dict, colour: bool = True) -> str:
    """One result as lines of text."""
    if "error" in result:
        return f"{result['input']}: error: {result['error']}"
    lines = [_heading(result)]
    if "tokens" in result:
        lines.append(_tokens(result["tokens"], result["attributions"], colour))
    elif "shape" in result:
        lines += _map(
            np.asarray(result["attributions"], dtype=np.float64), colour, result["task"] != "reconstruct"
        )
    elif "window" in result:
        lines += _steps(result["attributions"], colour)
    else:
        lines += _features(result["features"], result.get("values"), result["attributions"], colour)
    return "\n".join(lines)


def _heading(r: dict) -> str:
    if r["task"] == "reconstruct":
        flag = {True: "ANOMALY", False: "normal", None: "no threshold"}[r["anomaly"]]
        threshold = "none" if r["threshold"] is None else f"{r['threshold']:.4g}"
        return f"{r['input']}: {flag}, reconstruction error {r['score']:.4g} (threshold {threshold})"
    text = f"{r['input']}: {r['method']} for {r['target']} = {r['score']:.4g}"
    if "top" in r:
        text += " (top: " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"]) + ")"
    return text + f", {r['evaluations']} model evaluations"


def _cell(v: float, scale: float, colour: bool, signed: bool = True, width: int = 2) -> str:
    if colour:
        r, g, b = colours(np.array([v]), signed, scale)[0] if signed else _seq(v, scale)
        return f"\033[48;2;{r};{g};{b}m" + " " * width + RESET
    level = min(len(RAMP) - 1, int(abs(v) / scale * (len(RAMP) - 1) + 0.5)) if scale else 0
    return (RAMP[level] * width) if (v >= 0 or not signed) else ("-" + RAMP[level] * (width - 1))


def _seq(v: float, scale: float) -> np.ndarray:
    return colours(np.array([0.0, v, scale]), False)[1]


def _map(amap: np.ndarray, colour: bool, signed: bool) -> list[str]:
    h, w = amap.shape
    k = -(-w // MAX_COLUMNS)  # block side that brings the map within MAX_COLUMNS
    if k > 1:
        hh, ww = -(-h // k) * k, -(-w // k) * k
        padded = np.pad(amap, ((0, hh - h), (0, ww - w)), mode="edge")
        amap = padded.reshape(hh // k, k, ww // k, k).mean(axis=(1, 3))
    scale = float(np.abs(amap).max()) or 1.0
    return ["  " + "".join(_cell(v, scale, colour, signed) for v in row) for row in amap]


def _features(
    names: list[str], values, attributions: list[float], colour: bool, limit: int = 10
) -> list[str]:
    a = np.asarray(attributions, dtype=np.float64)
    order = np.argsort(-np.abs(a), kind="stable")[:limit]
    scale = float(np.abs(a).max()) or 1.0
    width = max(len(str(names[i])) for i in order)
    lines = []
    for i in order:
        bar = int(round(abs(a[i]) / scale * 20))
        shown = "" if values is None else f" = {values[i]:<10.4g}"
        cells = _cell(a[i], scale, colour, width=bar) if colour else ("+" if a[i] >= 0 else "-") * bar
        lines.append(f"  {str(names[i]):<{width}}{shown} {a[i]:+.4g} {cells}")
    if len(a) > limit:
        lines.append(f"  ... {len(a) - limit} more (--json lists every feature)")
    return lines


def _steps(attributions: list[float], colour: bool) -> list[str]:
    a = np.asarray(attributions, dtype=np.float64)
    scale = float(np.abs(a).max()) or 1.0
    n = len(a)
    top = np.argsort(-np.abs(a), kind="stable")[:3]
    strongest = ", ".join(f"t-{n - i} {a[i]:+.4g}" for i in top)
    return [
        "  oldest " + "".join(_cell(v, scale, colour) for v in a) + " newest",
        f"  strongest: {strongest}",
    ]


def _tokens(words: list[str], attributions: list[float], colour: bool) -> str:
    scale = float(np.abs(np.asarray(attributions)).max()) or 1.0
    if colour:
        out = []
        for word, v in zip(words, attributions):
            r, g, b = colours(np.array([v]), True, scale)[0]
            out.append(f"\033[48;2;{r};{g};{b}m\033[30m{word}{RESET}")
        return "  " + " ".join(out)
    return "  " + " ".join(f"{w}({v:+.3g})" for w, v in zip(words, attributions))
