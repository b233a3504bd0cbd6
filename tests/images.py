"""Decoded-PNG checks for the tests of charts and plots: a file that starts with the PNG signature
can still be truncated, blank or another figure, so these decode it (matplotlib's PNG reader) and
look at its size and pixels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def png_pixels(png: bytes | Path) -> np.ndarray:
    """The image as RGB floats in [0, 1], shape (height, width, 3); raises on a file that is not a
    complete PNG."""
    import matplotlib.image

    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    return matplotlib.image.imread(io.BytesIO(data), format="png")[..., :3]


def colour_share(pixels: np.ndarray, colour: str, tol: float = 0.02) -> float:
    """The share of ``pixels`` within ``tol`` (per channel) of a matplotlib ``colour`` ("C0", "#1f77b4")."""
    from matplotlib.colors import to_rgb

    return float((np.abs(pixels - np.asarray(to_rgb(colour))).max(axis=-1) <= tol).mean())


def assert_drawn(pixels: np.ndarray, min_colours: int = 50, min_ink: float = 0.01) -> None:
    """Not a flat or nearly empty image: at least ``min_colours`` distinct colours (lines, text,
    antialiasing) and at least ``min_ink`` of the pixels not white."""
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    ink = float((pixels.min(axis=-1) < 0.95).mean())
    assert colours >= min_colours, f"{colours} distinct colours"
    assert ink >= min_ink, f"{ink:.4f} of the pixels not white"
