"""Pictures of where the model looked: per-word frames, an animated GIF and a paper-style grid.

The 14x14 weights are made smooth the cheap way: bilinear to a small intermediate grid, a
small Gaussian blur there, then bilinear to the image size. That looks like the paper's
figures (`pyramid_expand`) at a few percent of the cost of blurring at full size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import resize_longest_side

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.figure import Figure


def upsample_attention(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One 14x14 attention map -> a smooth (height, width) map scaled to [0, 1]."""
    from scipy.ndimage import gaussian_filter  # imported here: scipy costs ~1.5 s at start-up

    width, height = size
    grid = np.asarray(alpha, dtype=np.float32)
    n = grid.shape[0]
    mid = Image.fromarray(grid, "F").resize((n * 4, n * 4), Image.BILINEAR)  # 56 x 56
    smooth = gaussian_filter(np.asarray(mid), sigma=2.0, mode="nearest")
    full = np.asarray(Image.fromarray(smooth, "F").resize((width, height), Image.BILINEAR))
    top = float(full.max())
    return full / top if top > 0 else full


def lit_cell(cell: int, size: tuple[int, int], grid: int = 14) -> np.ndarray:
    """A hard-attention model's look, as the paper draws it: the one grid cell its context came
    from, lit as a sharp square (row-major index `cell` of the grid), the rest 0. (height, width)."""
    width, height = size
    if not 0 <= int(cell) < grid * grid:  # would light nothing: a silent all-dark frame
        raise ValueError(f"cell {cell} is outside the {grid}x{grid} grid")
    row, col = divmod(int(cell), grid)
    out = np.zeros((height, width), dtype=np.float32)
    y0, y1 = round(row * height / grid), round((row + 1) * height / grid)
    x0, x1 = round(col * width / grid), round((col + 1) * width / grid)
    out[y0:y1, x0:x1] = 1.0
    return out


@lru_cache(maxsize=4)
def _colormap_lut(name: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)  # (256, 3)


def attention_focus(alpha: np.ndarray) -> float:
    """How concentrated one attention map is: 1 - entropy / log(cells); 0 spread evenly over
    the grid, 1 on a single cell."""
    p = np.asarray(alpha, dtype=np.float64).ravel()
    p = p[p > 0] / p.sum() if p.sum() > 0 else p[:0]
    if p.size <= 1:
        return 1.0 if p.size == 1 else 0.0
    return float(np.clip(1.0 + (p * np.log(p)).sum() / np.log(np.asarray(alpha).size), 0, 1))


def frame_opacity(alpha: np.ndarray, strongest: float = 0.6) -> float:
    """How strongly a word's map is painted: a diffuse map (the "a" that looks everywhere) is a
    faint tint, a map on one object is painted at full strength."""
    return strongest * float(np.clip(attention_focus(alpha) / 0.5, 0.15, 1.0))


def blend(
    image: Image.Image, heat: np.ndarray, opacity: float = 0.6, colormap: str = "inferno"
) -> Image.Image:
    """Colour the [0, 1] map and mix it over the image, stronger where attention is high.

    "inferno" is perceptually uniform and dark where attention is low, so the picture dims
    around the place the model looked instead of turning blue-red everywhere ("jet").

    Works one colour band at a time: numpy is slow on (H, W, 3) arrays broadcast against
    (H, W, 1) (inner loops of length 3), and `np.take` beats fancy indexing for the colormap;
    same arithmetic per pixel, so the same bytes, at about a third of the time.
    """
    lut = _colormap_lut(colormap)  # (256, 3)
    heat = np.clip(heat, 0, 1)  # (H, W): the colour and the weight read the same value
    index = (heat * 255).astype(np.uint8)  # (H, W)
    weight = opacity * (0.35 + 0.65 * heat)  # (H, W)
    keep = 1.0 - weight  # (H, W)
    bands = []
    for c, band in enumerate(image.convert("RGB").split()):
        colour = np.take(lut[:, c], index).astype(np.float32)  # (H, W)
        out = np.asarray(band, dtype=np.float32) * keep + colour * weight  # (H, W)
        bands.append(Image.fromarray(out.astype(np.uint8), "L"))
    return Image.merge("RGB", bands)


def spotlight(image: Image.Image, lit: np.ndarray, dim: float = 0.35) -> Image.Image:
    """The picture as it is where `lit` (H, W) is 1, darkened to `dim` elsewhere, with a thin
    yellow frame around the lit part: a hard-attention model's cell, seen through the dark."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    keep = dim + (1.0 - dim) * lit  # (H, W)
    out = rgb * keep[..., None]  # (H, W, 3)
    ring = np.zeros_like(lit, dtype=bool)
    ys, xs = np.nonzero(lit)
    if ys.size:  # a 2-pixel frame just outside the lit rectangle
        y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
        h, w = lit.shape
        ring[max(0, y0 - 2) : min(h, y1 + 3), max(0, x0 - 2) : min(w, x1 + 3)] = True
        ring[y0 : y1 + 1, x0 : x1 + 1] = False
    out[ring] = (255, 214, 0)
    return Image.fromarray(out.astype(np.uint8), "RGB")


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def label(image: Image.Image, text: str) -> Image.Image:
    """Write `text` in a dark band at the bottom of the image."""
    im = image.copy()
    draw = ImageDraw.Draw(im)
    font = _font(max(12, im.height // 18))
    box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    pad = max(4, th // 3)
    y0 = im.height - th - 2 * pad
    draw.rectangle([0, y0, im.width, im.height], fill=(0, 0, 0))
    draw.text(
        ((im.width - tw) // 2 - box[0], y0 + pad - box[1]), text, fill=(255, 255, 255), font=font
    )
    return im


def _fit(image: Image.Image, size: int | None) -> Image.Image:
    image = image.convert("RGB")
    if size:
        image = resize_longest_side(image, size, Image.BILINEAR, reducing_gap=2.0, enlarge=True)
    return image


def attention_frames(
    image: Image.Image,
    words: Sequence[str],
    alphas: np.ndarray,
    size: int | None = 448,
    with_labels: bool = True,
    cells: Sequence[int] | None = None,
) -> list[Image.Image]:
    """One RGB frame per word: its attention blended over the image (longest side `size`).

    `cells` (a hard-attention caption's `Caption.cells`): each word lights the one grid cell it
    looked at instead of the smooth map of the distribution `alphas`.
    """
    if len(words) != len(alphas):
        raise ValueError(f"{len(words)} words but {len(alphas)} attention maps")
    if cells is not None and len(cells) != len(words):
        raise ValueError(f"{len(words)} words but {len(cells)} looked-at cells")
    base = _fit(image, size)
    frames = []
    for t, (word, alpha) in enumerate(zip(words, alphas)):
        if cells is None:
            frame = blend(base, upsample_attention(alpha, base.size), frame_opacity(alpha))
        else:
            frame = spotlight(base, lit_cell(cells[t], base.size, np.shape(alpha)[-1]))
        frames.append(label(frame, word) if with_labels else frame)
    return frames


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 700) -> Path:
    """An animated, looping GIF whose frames share one palette.

    Pillow's own path (each RGB frame quantised its slow way) is ~15x slower. One palette,
    made from small copies of all frames, then mapped onto each with Floyd-Steinberg dithering:
    no palette flicker between frames (every frame shows the same photo) and no colour bands
    in smooth gradients.
    """
    if not frames:
        raise ValueError(
            "a GIF needs at least one frame (an empty caption has no attention to draw)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = [f.convert("RGB") for f in frames]
    side = 112
    mosaic = Image.new("RGB", (side * len(rgb), side))
    for i, frame in enumerate(rgb):
        mosaic.paste(frame.resize((side, side), Image.NEAREST), (side * i, 0))
    palette = mosaic.quantize(255, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    # error diffusion: 255 colours shared by a photo and a colour map otherwise show bands
    quantised = [f.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in rgb]
    quantised[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=quantised[1:],
        duration=duration_ms,
        loop=0,
        optimize=False,
    )
    return path


def _fitting_fontsize(text: str, largest: float, width: float, dpi: float) -> float:
    """The largest size <= `largest` points at which `text` is at most `width` pixels wide, by
    matplotlib's own metrics of the letters (20 "m"s are three times as wide as 20 "i"s).
    Found by bisection: hinting makes widths far from proportional to the size."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, dpi)

    def drawn(size: float) -> float:
        return renderer.get_text_width_height_descent(text, FontProperties(size=size), False)[0]

    if drawn(largest) <= width:
        return largest
    fits, too_wide = 0.0, largest
    for _ in range(12):  # to 1/4096 of `largest`
        middle = (fits + too_wide) / 2
        if drawn(middle) <= width:
            fits = middle
        else:
            too_wide = middle
    return max(fits, 1.0)  # a word too long even at 1 point is drawn at 1 point


def attention_grid(
    image: Image.Image,
    words: Sequence[str],
    alphas: np.ndarray,
    path: str | Path | None = None,
    columns: int | None = None,
    size: int = 224,
    title: str | None = None,
    max_width: float = 11.0,
    cells: Sequence[int] | None = None,
) -> Figure:
    """The paper's figure: the image, then one panel per word with the word under it.

    Laid out from the picture's aspect ratio: panels keep its shape (a 4:1 panorama gets wide,
    short panels, fewer per row), each label has its own band under its panel, shrunk to the
    panel's width if need be, so labels never touch a picture or each other. `columns`: panels
    per row (default: as many as fit in `max_width` inches). `cells`: light each word's looked-at
    cell (hard attention; see `attention_frames`). Returns the matplotlib Figure; saves a PNG
    when `path` is given.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    base = _fit(image, size)
    frames = attention_frames(base, words, alphas, size=None, with_labels=False, cells=cells)
    panels = [("", np.asarray(base))] + [(w, np.asarray(f)) for w, f in zip(words, frames)]
    aspect = base.width / base.height
    panel_w = float(np.clip(2.0 * aspect**0.5, 1.2, 4.0))  # inches; wide pictures get wider panels
    panel_h = panel_w / aspect
    gap, label_h, font = 0.15, 0.4, 12.0
    title_h = 0.55 if title else 0.1
    # n panels take n * panel_w + (n + 1) * gap inches, margins included (a hair of slack, so
    # panels that fit exactly are not lost to rounding)
    fit = max(1, math.floor((max_width - gap) / (panel_w + gap) + 1e-9))
    columns = max(1, min(columns or fit, len(panels)))
    rows = -(-len(panels) // columns)
    width = columns * panel_w + (columns + 1) * gap
    height = title_h + rows * (panel_h + label_h) + gap
    fig = Figure(figsize=(width, height), dpi=100)
    for i, (word, pixels) in enumerate(panels):
        row, col = divmod(i, columns)
        left = gap + col * (panel_w + gap)
        top = title_h + row * (panel_h + label_h)
        ax = fig.add_axes(
            (left / width, 1 - (top + panel_h) / height, panel_w / width, panel_h / height)
        )
        ax.imshow(pixels, aspect="auto")
        ax.set_axis_off()
        if word:  # shrunk to its panel's width if need be
            size_pt = _fitting_fontsize(word, font, 0.95 * panel_w * fig.dpi, fig.dpi)
            fig.text(
                (left + panel_w / 2) / width,
                1 - (top + panel_h + label_h / 2) / height,
                word,
                ha="center",
                va="center",
                fontsize=size_pt,
            )
    if title:
        fig.text(
            0.5, 1 - title_h / 2 / height, title, ha="center", va="center", fontsize=13, wrap=True
        )
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    return fig
